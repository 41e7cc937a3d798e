# datasets -> victims; model spec -> seeded initial weights.


rule data:
    input:
        lambda wc: T.dataset_inputs(config, wc.dataset),
    output:
        P.VICTIMS,
    log:
        "logs/data/{dataset}.json",
        out="logs/data/{dataset}.log",
    benchmark:
        "logs/data/{dataset}.benchmark.tsv"
    params:
        # what the job depends on in the config: a change re-runs it and what depends on it
        settings=lambda wc: T.job_settings(config, "data", wc),
    script:
        "../workflow/scripts/data.py"


rule model:
    input:
        # a pretrained text model's downloaded checkpoint (rule download_pretrained); nothing otherwise
        lambda wc: T.model_inputs(config, wc.study, wc.model),
    output:
        P.WEIGHTS,
    log:
        "logs/model/{study}/{dataset}/{model}.json",
        out="logs/model/{study}/{dataset}/{model}.log",
    benchmark:
        "logs/model/{study}/{dataset}/{model}.benchmark.tsv"
    params:
        # what the job depends on in the config: a change re-runs it and what depends on it
        settings=lambda wc: T.job_settings(config, "model", wc),
    script:
        "../workflow/scripts/model.py"
