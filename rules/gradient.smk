# victims + weights -> the client's shared update (and what the attacker is told).
from gibench.pipeline import slot_groups as SG

# group_slots (issue 23): one job per decade of victim slots (s010-s019) runs rule gradient's /
# significance's / masks' / masks_any's job for each of its ten slots (gibench.pipeline.slot_groups):
# the same artifacts, ~10x fewer jobs, where the study asks for all ten slots of a case
# (SE.stage_twin; LAMP's 5 slots and their masks and scores go slot by slot).  Each per-slot rule
# gets the exact complement of its twin's constraints (SG.per_slot_constraint), so Snakemake
# builds no per-slot job for a twin's file.
_STAGE_TWINS = {r: SE.stage_twin(config, r) for r in SE.STAGE_RULES}


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
    wildcard_constraints:
        **SG.per_slot_constraint(
            [P.GRADIENT, P.KNOWLEDGE],
            _STAGE_TWINS["gradient"],
            workflow.wildcard_constraints,
        ),
    params:
        # what the job depends on in the config: a change re-runs it and what depends on it
        settings=lambda wc: T.job_settings(config, "gradient", wc),
    script:
        "../workflow/scripts/gradient.py"


rule gradient_decade:
    input:
        unpack(SG.slot_inputs(victims=P.VICTIMS, weights=study_weights)),
    output:
        **SG.slot_outputs(gradient=P.GRADIENT, knowledge=P.KNOWLEDGE),
    log:
        "logs/gradient/{study}/{dataset}/{model}/{decade}x.json",
        out="logs/gradient/{study}/{dataset}/{model}/{decade}x.log",
    benchmark:
        "logs/gradient/{study}/{dataset}/{model}/{decade}x.benchmark.tsv"
    wildcard_constraints:
        **_STAGE_TWINS["gradient"],
    params:
        **SG.slot_params(settings=lambda wc: T.job_settings(config, "gradient", wc)),
    script:
        "../workflow/scripts/gradient.py"


ruleorder: gradient_decade > gradient
