# server side: one job per restart (a GPU job on clusters), then evaluation against ground truth.


rule attack:
    input:
        unpack(lambda wc: T.attack_inputs(config, wc)),  # LAMP's LM prior checkpoint, if any
        weights=study_weights,
        gradient=P.GRADIENT,
        knowledge=P.KNOWLEDGE,
        mask=P.MASK,
    output:
        recon=P.ATTACK,
        trace=P.TRACE,
    params:
        # hyperparameters enter the job's params so changing one re-runs only its jobs
        attack=lambda wc: T.attack_params(config, wc.study, wc.attack, wc.model),
    log:
        "logs/attack/{study}/{dataset}/{model}/{slot}/{metric}/{ratio}/{attack}/rep{rep}.json",
        out="logs/attack/{study}/{dataset}/{model}/{slot}/{metric}/{ratio}/{attack}/rep{rep}.log",
    benchmark:
        "logs/attack/{study}/{dataset}/{model}/{slot}/{metric}/{ratio}/{attack}/rep{rep}.benchmark.tsv",
    script:
        "../workflow/scripts/attack.py"


rule metrics:
    input:
        unpack(lambda wc: T.metrics_job_inputs(config, wc)),
    output:
        P.METRICS,
    params:
        # the metric settings of evaluation (table-level keys re-run only the tables)
        evaluation=lambda wc: T.metrics_settings(config, wc.study),
    log:
        "logs/metrics/{study}/{dataset}/{model}/{slot}/{metric}/{ratio}/{attack}.json",
        out="logs/metrics/{study}/{dataset}/{model}/{slot}/{metric}/{ratio}/{attack}.log",
    benchmark:
        "logs/metrics/{study}/{dataset}/{model}/{slot}/{metric}/{ratio}/{attack}.benchmark.tsv",
    script:
        "../workflow/scripts/metrics.py"


rule gather_metrics:
    input:
        lambda wc: T.metric_files(config, wc.study),
    output:
        P.ALL_METRICS,
    log:
        "logs/gather_metrics/{study}.json",
        out="logs/gather_metrics/{study}.log",
    script:
        "../workflow/scripts/gather.py"


rule gather_cost:
    input:
        lambda wc: T.cost_files(config, wc.study),
    output:
        P.COST,
    log:
        "logs/gather_cost/{study}.json",
        out="logs/gather_cost/{study}.log",
    script:
        "../workflow/scripts/gather.py"
