# victims + weights -> the client's shared update (and what the attacker is told).


rule gradient:
    input:
        victims=P.VICTIMS,
        weights=study_weights,
    output:
        gradient=P.GRADIENT,
        knowledge=P.KNOWLEDGE,
    log:
        "logs/gradient/{study}/{dataset}/{model}/{slot}.json",
        out="logs/gradient/{study}/{dataset}/{model}/{slot}.log",
    benchmark:
        "logs/gradient/{study}/{dataset}/{model}/{slot}.benchmark.tsv"
    params:
        # what the job depends on in the config: a change re-runs it and what depends on it
        settings=lambda wc: T.job_settings(config, "gradient", wc),
    script:
        "../workflow/scripts/gradient.py"
