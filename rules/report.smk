# The run's config as its own item of `snakemake --report` (gibench.pipeline.jobs_report);
# tables, figures and claims are marked in their own rules (report_table, report_figure, ...).
from gibench.pipeline import jobs_report as JR


localrules:
    report_config,


rule report_config:
    output:
        html=report(
            JR.CONFIG_HTML,
            caption=os.path.join(REPORT_CAPTIONS, "config.rst"),
            category="Config",
            labels={"item": "config"},
        ),
    log:
        "logs/report_config.json",
        out="logs/report_config.log",
    params:
        # the whole config: any change re-writes the page
        config_digest=JR.digest_obj(config),
    script:
        "../workflow/scripts/report_config.py"
