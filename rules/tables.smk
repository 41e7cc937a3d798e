# rows -> tables (CSV + Markdown) and figures (PNG + PDF). One rule per table, so that
# changing one table's formatting re-runs only that table.


rule table:
    input:
        unpack(lambda wc: T.table_inputs(config, wc.study, wc.table)),
    output:
        csv=P.TABLE.replace("{ext}", "csv"),
        md=P.TABLE.replace("{ext}", "md"),
        html=report_table(P.TABLE.replace("{ext}", "html")),
    log:
        "logs/tables/{study}/{table}.json",
        out="logs/tables/{study}/{table}.log",
    wildcard_constraints:
        # the selective-encryption study's tables (its entries of gibench.tables.TABLES); other
        # studies have their own table rules
        study="selective_encryption",
        table=T.table_choice("selective_encryption"),
    params:
        # what the table depends on in the config: a change re-runs only the affected tables
        settings=lambda wc: T.table_settings(config, wc.study, wc.table),
    script:
        "../workflow/scripts/table.py"


rule figure:
    input:
        unpack(lambda wc: SE.figure_inputs(config, wc.study, wc.figure)),
    output:
        png=report_figure(P.FIGURE.replace("{ext}", "png")),
        pdf=P.FIGURE.replace("{ext}", "pdf"),
    log:
        "logs/figures/{study}/{figure}.json",
        out="logs/figures/{study}/{figure}.log",
    wildcard_constraints:
        study="selective_encryption",
        # he_cost_vs_protection is rule he_cost_figure's (rules/overhead.smk)
        figure=r"(?!he_cost_vs_protection\.)[^/]+",
    params:
        settings=lambda wc: T.table_settings(config, wc.study, "figures"),
    script:
        "../workflow/scripts/figure.py"
