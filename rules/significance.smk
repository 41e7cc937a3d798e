# client side: significance scores per gradient entry (+ their cost), then masks per ratio.


rule significance:
    # a GPU job on clusters (profiles/default sets gpu: 1)
    input:
        victims=P.VICTIMS,
        weights=study_weights,
        gradient=P.GRADIENT,
    output:
        scores=P.SCORES,
        cost=P.SCORE_COST,
    log:
        "logs/significance/{study}/{dataset}/{model}/{slot}/{significance}.json",
        out="logs/significance/{study}/{dataset}/{model}/{slot}/{significance}.log",
    benchmark:
        "logs/significance/{study}/{dataset}/{model}/{slot}/{significance}.benchmark.tsv"
    params:
        # what the job depends on in the config: a change re-runs it and what depends on it
        settings=lambda wc: T.job_settings(config, "significance", wc),
    script:
        "../workflow/scripts/significance.py"


# One job per (slot, significance metric) writes the masks of every ratio strictly between 0 and 1.
_INTERIOR = SE.interior_ratios(config)
if _INTERIOR:

    rule masks:
        input:
            scores=P.SCORES,
        output:
            [P.MASK.replace("{ratio}", r) for r in _INTERIOR],
        log:
            "logs/masks/{study}/{dataset}/{model}/{slot}/{significance}.json",
            out="logs/masks/{study}/{dataset}/{model}/{slot}/{significance}.log",
        benchmark:
            "logs/masks/{study}/{dataset}/{model}/{slot}/{significance}.benchmark.tsv"
        wildcard_constraints:
            significance="(?!any$)[a-z0-9_]+",
        params:
            # what the job depends on in the config: a change re-runs it and what depends on it
            settings=lambda wc: T.job_settings(config, "masks", wc),
        script:
            "../workflow/scripts/masks.py"


# Ratios 0 and 1 do not depend on the significance metric: one shared mask under significance "any".
rule masks_any:
    input:
        gradient=P.GRADIENT,
    output:
        P.MASK.replace("{significance}", P.ANY_METRIC),
    log:
        "logs/masks/{study}/{dataset}/{model}/{slot}/any_{ratio}.json",
        out="logs/masks/{study}/{dataset}/{model}/{slot}/any_{ratio}.log",
    wildcard_constraints:
        ratio="r0[.]000|r1[.]000",
    params:
        # what the job depends on in the config: a change re-runs it and what depends on it
        settings=lambda wc: T.job_settings(config, "masks_any", wc),
    script:
        "../workflow/scripts/masks.py"
