# Local language models (issue 25): a small GPT-2 trained here on the bundled corpora's
# training text, the victims held out (gibench.models.pretrain, gibench.pipeline.jobs_lm).
# Studies use it with models.<family>.weights: pretrained_local (the attacked classifier is its
# trunk with a fresh head) and LAMP's prior: pretrained_local.
from gibench.pipeline import jobs_lm as LM


rule lm_pretrain:
    input:
        # its corpora, held-out splits and the sources of the victims it holds out
        unpack(lambda wc: LM.lm_inputs(config, wc.family)),
    output:
        P.LM_WEIGHTS,
    log:
        "logs/lm_pretrain/{family}.json",
        out="logs/lm_pretrain/{family}.log",
    benchmark:
        "logs/lm_pretrain/{family}.benchmark.tsv"
    wildcard_constraints:
        family="gpt2|bert",
    threads: 1  # the bytes depend on the thread count (CPU reductions); one thread keeps them stable
    params:
        # everything the model depends on: the seed, lm_pretrain.<family>, the victim pools
        settings=lambda wc: LM.lm_job_settings(config, wc.family),
    script:
        "../workflow/scripts/lm_pretrain.py"


rule lm_table:
    input:
        unpack(lambda wc: LM.lm_table_inputs(config, wc.study)),
    output:
        csv=P.TABLE.replace("{table}", LM.LM_TABLE).replace("{ext}", "csv"),
        md=P.TABLE.replace("{table}", LM.LM_TABLE).replace("{ext}", "md"),
        html=report_table(
            P.TABLE.replace("{table}", LM.LM_TABLE).replace("{ext}", "html")
        ),
    log:
        "logs/tables/{study}/lm_pretrain.json",
        out="logs/tables/{study}/lm_pretrain.log",
    script:
        "../workflow/scripts/lm_table.py"
