# The papers' findings as checks: tables' CSVs + config/claims/<study>.yaml -> results/claims/<study>.{md,csv}
# (gibench.claims).  Every configured study's claims file is validated here, when the DAG is built.
from gibench import claims as _claims
from gibench.pipeline import jobs_claims as JC

try:
    JC.check_claims(config)
except _claims.ClaimsError as e:
    raise WorkflowError(str(e))


rule claims:
    input:
        unpack(lambda wc: JC.claims_inputs(config, wc.study)),
    output:
        md=JC.CLAIMS.replace("{ext}", "md"),
        csv=JC.CLAIMS.replace("{ext}", "csv"),
        html=report_claims(JC.CLAIMS.replace("{ext}", "html")),
    log:
        "logs/claims/{study}.json",
        out="logs/claims/{study}.log",
    wildcard_constraints:
        study="selective_encryption|stochastic_defenses|concealed_samples",
    params:
        # the run's scale (the study's settings) decides "not checkable (scale)": a change re-runs the report
        settings=lambda wc: JC.claims_settings(config, wc.study),
    script:
        "../workflow/scripts/claims.py"
