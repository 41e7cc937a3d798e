# Real CKKS (TenSEAL) cost of encrypting each mask: one job per (model, significance metric)
# measures a FedAvg round for each of its ratios (ratios 0/1 once, under significance "any"),
# then the rows are gathered into the HE-overhead table and the cost-vs-protection figure.
from gibench.studies.selective_encryption import jobs_overhead as OV
from gibench.studies.selective_encryption import paths as SEP


rule overhead:
    input:
        unpack(lambda wc: OV.overhead_inputs(config, wc)),
    output:
        SEP.OVERHEAD,
    log:
        "logs/overhead/{study}/{dataset}/{model}/{significance}.json",
        out="logs/overhead/{study}/{dataset}/{model}/{significance}.log",
    benchmark:
        "logs/overhead/{study}/{dataset}/{model}/{significance}.benchmark.tsv"
    params:
        # what the job depends on in the config: a change re-measures only these jobs
        settings=lambda wc: OV.overhead_settings(config, wc.study),
    script:
        "../workflow/scripts/overhead.py"


rule gather_overhead:
    input:
        lambda wc: OV.overhead_files(config, wc.study),
    output:
        SEP.ALL_OVERHEAD,
    log:
        "logs/gather_overhead/{study}.json",
        out="logs/gather_overhead/{study}.log",
    script:
        "../workflow/scripts/gather.py"


rule he_overhead_table:
    input:
        unpack(lambda wc: OV.table_inputs(config, wc.study)),
    output:
        csv=P.TABLE.replace("{table}", OV.TABLE_NAME).replace("{ext}", "csv"),
        md=P.TABLE.replace("{table}", OV.TABLE_NAME).replace("{ext}", "md"),
        html=report_table(
            P.TABLE.replace("{table}", OV.TABLE_NAME).replace("{ext}", "html")
        ),
    log:
        "logs/tables/{study}/he_overhead.json",
        out="logs/tables/{study}/he_overhead.log",
    params:
        settings=lambda wc: T.table_settings(config, wc.study, OV.TABLE_NAME),
    script:
        "../workflow/scripts/overhead.py"


rule he_cost_figure:
    input:
        unpack(lambda wc: OV.figure_inputs(config, wc.study)),
    output:
        png=report_figure(
            P.FIGURE.replace("{figure}", OV.FIGURE_NAME).replace("{ext}", "png")
        ),
        pdf=P.FIGURE.replace("{figure}", OV.FIGURE_NAME).replace("{ext}", "pdf"),
    log:
        "logs/figures/{study}/he_cost_vs_protection.json",
        out="logs/figures/{study}/he_cost_vs_protection.log",
    params:
        settings=lambda wc: T.table_settings(config, wc.study, "figures"),
    script:
        "../workflow/scripts/overhead.py"


# the generic figure rule's output pattern also matches this figure's path
ruleorder: he_cost_figure > figure
