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
    wildcard_constraints:
        **SG.per_slot_constraint(
            [P.SCORES, P.SCORE_COST],
            _STAGE_TWINS["significance"],
            workflow.wildcard_constraints,
        ),
    params:
        # what the job depends on in the config: a change re-runs it and what depends on it
        settings=lambda wc: T.job_settings(config, "significance", wc),
    script:
        "../workflow/scripts/significance.py"


# group_slots (issue 23): the decade twins of significance, masks and masks_any (rules/gradient.smk
# says how; _STAGE_TWINS is set there)
rule significance_decade:
    input:
        unpack(
            SG.slot_inputs(
                victims=P.VICTIMS, weights=study_weights, gradient=P.GRADIENT
            )
        ),
    output:
        **SG.slot_outputs(scores=P.SCORES, cost=P.SCORE_COST),
    log:
        "logs/significance/{study}/{dataset}/{model}/{decade}x/{significance}.json",
        out="logs/significance/{study}/{dataset}/{model}/{decade}x/{significance}.log",
    benchmark:
        "logs/significance/{study}/{dataset}/{model}/{decade}x/{significance}.benchmark.tsv"
    wildcard_constraints:
        **_STAGE_TWINS["significance"],
    params:
        **SG.slot_params(settings=lambda wc: T.job_settings(config, "significance", wc)),
    script:
        "../workflow/scripts/significance.py"


ruleorder: significance_decade > significance


# One job per (slot, significance metric) writes the masks of every ratio strictly between 0 and 1.
_INTERIOR = SE.interior_ratios(config)
if _INTERIOR:
    _MASKS = [P.MASK.replace("{ratio}", r) for r in _INTERIOR]

    rule masks:
        input:
            scores=P.SCORES,
        output:
            _MASKS,
        log:
            "logs/masks/{study}/{dataset}/{model}/{slot}/{significance}.json",
            out="logs/masks/{study}/{dataset}/{model}/{slot}/{significance}.log",
        benchmark:
            "logs/masks/{study}/{dataset}/{model}/{slot}/{significance}.benchmark.tsv"
        wildcard_constraints:
            **SG.per_slot_constraint(
                _MASKS, _STAGE_TWINS["masks"], workflow.wildcard_constraints
            ),
            significance="(?!any$)[a-z0-9_]+",
        params:
            # what the job depends on in the config: a change re-runs it and what depends on it
            settings=lambda wc: T.job_settings(config, "masks", wc),
        script:
            "../workflow/scripts/masks.py"

    rule masks_decade:
        input:
            unpack(SG.slot_inputs(scores=P.SCORES)),
        output:
            # rule masks' outputs are unnamed (_0, _1, ... in their records): named so here,
            # each slot's view is rule masks' job's, records included
            **SG.slot_outputs(**{f"_{i}": p for i, p in enumerate(_MASKS)}),
        log:
            "logs/masks/{study}/{dataset}/{model}/{decade}x/{significance}.json",
            out="logs/masks/{study}/{dataset}/{model}/{decade}x/{significance}.log",
        benchmark:
            "logs/masks/{study}/{dataset}/{model}/{decade}x/{significance}.benchmark.tsv"
        wildcard_constraints:
            **_STAGE_TWINS["masks"],
            significance="(?!any$)[a-z0-9_]+",
        params:
            **SG.slot_params(settings=lambda wc: T.job_settings(config, "masks", wc)),
        script:
            "../workflow/scripts/masks.py"

    ruleorder: masks_decade > masks


# Ratios 0 and 1 do not depend on the significance metric: one shared mask under significance "any".
_MASK_ANY = P.MASK.replace("{significance}", P.ANY_METRIC)


rule masks_any:
    input:
        gradient=P.GRADIENT,
    output:
        _MASK_ANY,
    log:
        "logs/masks/{study}/{dataset}/{model}/{slot}/any_{ratio}.json",
        out="logs/masks/{study}/{dataset}/{model}/{slot}/any_{ratio}.log",
    wildcard_constraints:
        **SG.per_slot_constraint(
            [_MASK_ANY], _STAGE_TWINS["masks_any"], workflow.wildcard_constraints
        ),
        ratio="r0[.]000|r1[.]000",
    params:
        # what the job depends on in the config: a change re-runs it and what depends on it
        settings=lambda wc: T.job_settings(config, "masks_any", wc),
    script:
        "../workflow/scripts/masks.py"


rule masks_any_decade:
    input:
        unpack(SG.slot_inputs(gradient=P.GRADIENT)),
    output:
        # unnamed in rule masks_any (_0 in its records): named so here (see masks_decade)
        **SG.slot_outputs(_0=_MASK_ANY),
    log:
        "logs/masks/{study}/{dataset}/{model}/{decade}x/any_{ratio}.json",
        out="logs/masks/{study}/{dataset}/{model}/{decade}x/any_{ratio}.log",
    wildcard_constraints:
        **_STAGE_TWINS["masks_any"],
        ratio="r0[.]000|r1[.]000",
    params:
        **SG.slot_params(settings=lambda wc: T.job_settings(config, "masks_any", wc)),
    script:
        "../workflow/scripts/masks.py"


ruleorder: masks_any_decade > masks_any
