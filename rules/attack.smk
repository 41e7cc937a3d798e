# server side: attack jobs (GPU jobs on clusters), then evaluation against ground truth.
from gibench.pipeline import slot_groups as SG

# Attacks with one restart: one job per restart (wildcard rep).  Attacks with k > 1 restarts:
# one job per case (rule attack_restarts) runs all k -- together, vectorised, where the attack
# allows it (the registry entry's `many`: ATTACKS.entry(kind).many) -- and still writes one
# artifact per restart.  Each artifact carries its restart's loss trace (gibench.io.load_trace):
# one output file per restart.
_RESTARTS = SE.restart_groups(config)
_MULTI = [k for k in _RESTARTS if k > 1]


# group_slots (issue 23): the decade twins' constraints (rule attack_decade below: grouped
# attacks, study, full decades) and the partial-decade twins' (attack_decade_part: e.g. LAMP's
# 5 slots s000-s004, SG.Part); each per-slot rule gets their exact complement
# (SG.per_slot_constraint), so Snakemake builds no per-slot job for a decade twin's file.
_TWINS = {k: SE.attack_twin(config, v) for k, v in _RESTARTS.items()}
_ONE_TWIN = _TWINS.get(1) or SE.attack_twin(config, [])
_PARTS = {k: SE.attack_part(config, v) for k, v in _RESTARTS.items()}
_ONE_PART = _PARTS.get(1) or SE.attack_part(config, [])


rule attack:
    input:
        unpack(lambda wc: T.attack_inputs(config, wc)),  # LAMP's LM prior checkpoint, if any
        weights=study_weights,
        gradient=P.GRADIENT,
        knowledge=P.KNOWLEDGE,
        mask=P.MASK,
    output:
        recon=P.ATTACK,
    log:
        "logs/attack/{study}/{dataset}/{model}/{slot}/{significance}/{ratio}/{attack}/rep{rep}.json",
        out="logs/attack/{study}/{dataset}/{model}/{slot}/{significance}/{ratio}/{attack}/rep{rep}.log",
    benchmark:
        "logs/attack/{study}/{dataset}/{model}/{slot}/{significance}/{ratio}/{attack}/rep{rep}.benchmark.tsv"
    wildcard_constraints:
        **SG.per_slot_constraint(
            [P.ATTACK], _ONE_TWIN, workflow.wildcard_constraints, part=_ONE_PART
        ),
        attack=T.attack_choice(_RESTARTS.get(1, [])),
    params:
        # hyperparameters enter the job's params so changing one re-runs only its jobs
        attack=lambda wc: T.attack_params(config, wc.study, wc.attack, wc.model),
    script:
        "../workflow/scripts/attack.py"


for _k in _MULTI:

    rule:
        # one name per restart count; the usual single count is plain attack_restarts
        name:
            "attack_restarts" if len(_MULTI) == 1 else f"attack_restarts{_k}"
        input:
            unpack(lambda wc: T.attack_inputs(config, wc)),
            weights=study_weights,
            gradient=P.GRADIENT,
            knowledge=P.KNOWLEDGE,
            mask=P.MASK,
        output:
            recon=[P.ATTACK.replace("{rep}", str(i)) for i in range(_k)],
        log:
            "logs/attack/{study}/{dataset}/{model}/{slot}/{significance}/{ratio}/{attack}/restarts.json",
            out="logs/attack/{study}/{dataset}/{model}/{slot}/{significance}/{ratio}/{attack}/restarts.log",
        benchmark:
            "logs/attack/{study}/{dataset}/{model}/{slot}/{significance}/{ratio}/{attack}/restarts.benchmark.tsv"
        wildcard_constraints:
            **SG.per_slot_constraint(
                [P.ATTACK], _TWINS[_k], workflow.wildcard_constraints, part=_PARTS[_k]
            ),
            attack=T.attack_choice(_RESTARTS[_k]),
        params:
            attack=lambda wc: T.attack_params(config, wc.study, wc.attack, wc.model),
        script:
            "../workflow/scripts/attack.py"


# group_slots (issue 23): one job per decade of victim slots (s010-s019) runs rule attack's /
# attack_restarts' job for each of its ten slots (gibench.pipeline.slot_groups): the same
# artifacts, ~10x fewer jobs.  The first n slots of a partial decade -- attacks run on fewer
# slots (LAMP: s000-s004) -- run as one job of the *_decade_part twins (SG.Part: which attacks,
# decade and n); other slots outside a full decade go slot by slot.


rule attack_decade:
    input:
        unpack(
            SG.slot_inputs(
                lambda wc: T.attack_inputs(config, wc),
                weights=study_weights,
                gradient=P.GRADIENT,
                knowledge=P.KNOWLEDGE,
                mask=P.MASK,
            )
        ),
    output:
        **SG.slot_outputs(recon=P.ATTACK),
    log:
        "logs/attack/{study}/{dataset}/{model}/{decade}x/{significance}/{ratio}/{attack}/rep{rep}.json",
        out="logs/attack/{study}/{dataset}/{model}/{decade}x/{significance}/{ratio}/{attack}/rep{rep}.log",
    benchmark:
        "logs/attack/{study}/{dataset}/{model}/{decade}x/{significance}/{ratio}/{attack}/rep{rep}.benchmark.tsv"
    wildcard_constraints:
        **_ONE_TWIN,
    params:
        **SG.slot_params(
            attack=lambda wc: T.attack_params(config, wc.study, wc.attack, wc.model)
        ),
    script:
        "../workflow/scripts/attack.py"


ruleorder: attack_decade > attack


rule attack_decade_part:
    input:
        unpack(
            SG.slot_inputs(
                lambda wc: T.attack_inputs(config, wc),
                slots=_ONE_PART.slots,
                weights=study_weights,
                gradient=P.GRADIENT,
                knowledge=P.KNOWLEDGE,
                mask=P.MASK,
            )
        ),
    output:
        **SG.slot_outputs(recon=P.ATTACK, slots=_ONE_PART.slots),
    log:
        "logs/attack/{study}/{dataset}/{model}/{decade}x/{significance}/{ratio}/{attack}/rep{rep}.json",
        out="logs/attack/{study}/{dataset}/{model}/{decade}x/{significance}/{ratio}/{attack}/rep{rep}.log",
    benchmark:
        "logs/attack/{study}/{dataset}/{model}/{decade}x/{significance}/{ratio}/{attack}/rep{rep}.benchmark.tsv"
    wildcard_constraints:
        **_ONE_PART.constraints,
    params:
        **SG.slot_params(
            attack=lambda wc: T.attack_params(config, wc.study, wc.attack, wc.model),
            slots=_ONE_PART.slots,
        ),
    script:
        "../workflow/scripts/attack.py"


ruleorder: attack_decade_part > attack


for _k in _MULTI:
    _name = "attack_restarts" if len(_MULTI) == 1 else f"attack_restarts{_k}"

    rule:
        name:
            f"{_name}_decade"
        input:
            unpack(
                SG.slot_inputs(
                    lambda wc: T.attack_inputs(config, wc),
                    weights=study_weights,
                    gradient=P.GRADIENT,
                    knowledge=P.KNOWLEDGE,
                    mask=P.MASK,
                )
            ),
        output:
            **SG.slot_outputs(
                recon=[P.ATTACK.replace("{rep}", str(i)) for i in range(_k)]
            ),
        log:
            "logs/attack/{study}/{dataset}/{model}/{decade}x/{significance}/{ratio}/{attack}/restarts.json",
            out="logs/attack/{study}/{dataset}/{model}/{decade}x/{significance}/{ratio}/{attack}/restarts.log",
        benchmark:
            "logs/attack/{study}/{dataset}/{model}/{decade}x/{significance}/{ratio}/{attack}/restarts.benchmark.tsv"
        wildcard_constraints:
            **_TWINS[_k],
        params:
            **SG.slot_params(
                attack=lambda wc: T.attack_params(
                    config, wc.study, wc.attack, wc.model
                )
            ),
        script:
            "../workflow/scripts/attack.py"

    workflow.ruleorder(f"{_name}_decade", _name)

    rule:
        name:
            f"{_name}_decade_part"
        input:
            unpack(
                SG.slot_inputs(
                    lambda wc: T.attack_inputs(config, wc),
                    slots=_PARTS[_k].slots,
                    weights=study_weights,
                    gradient=P.GRADIENT,
                    knowledge=P.KNOWLEDGE,
                    mask=P.MASK,
                )
            ),
        output:
            **SG.slot_outputs(
                recon=[P.ATTACK.replace("{rep}", str(i)) for i in range(_k)],
                slots=_PARTS[_k].slots,
            ),
        log:
            "logs/attack/{study}/{dataset}/{model}/{decade}x/{significance}/{ratio}/{attack}/restarts.json",
            out="logs/attack/{study}/{dataset}/{model}/{decade}x/{significance}/{ratio}/{attack}/restarts.log",
        benchmark:
            "logs/attack/{study}/{dataset}/{model}/{decade}x/{significance}/{ratio}/{attack}/restarts.benchmark.tsv"
        wildcard_constraints:
            **_PARTS[_k].constraints,
        params:
            **SG.slot_params(
                attack=lambda wc: T.attack_params(
                    config, wc.study, wc.attack, wc.model
                ),
                slots=_PARTS[_k].slots,
            ),
        script:
            "../workflow/scripts/attack.py"

    workflow.ruleorder(f"{_name}_decade_part", _name)


# Evaluation: the reconstruction metrics (evaluation.image_metrics / the text metrics) of every
# attack output of one victim slot against its ground truth, one row per output; the rows of
# every slot are gathered into results/metrics/<study>/metrics.parquet (rule gather_metrics).
# It also writes the slot's views: the kept restart of each case, its reconstruction and trace
# (gibench.tables.selective_encryption.views), which the grid and traces figures read instead
# of every restart's artifact (issue 23: ~26,000 fewer input references at paper scale).
rule evaluate:
    input:
        unpack(lambda wc: SE.evaluate_inputs(config, wc)),
    output:
        metrics=P.METRICS,
        views=P.VIEWS,
    log:
        "logs/evaluate/{study}/{dataset}/{model}/{slot}.json",
        out="logs/evaluate/{study}/{dataset}/{model}/{slot}.log",
    benchmark:
        "logs/evaluate/{study}/{dataset}/{model}/{slot}.benchmark.tsv"
    params:
        # the metric settings of evaluation (table-level keys re-run only the tables)
        evaluation=lambda wc: T.evaluate_settings(config, wc.study),
        # what chooses the kept restart of the views (best_of_restarts; protection under oracle;
        # nothing for text slots, which have no views): a change re-runs exactly the evaluate jobs
        # whose views change, and the figures.  (A rule of its own for the views would have to
        # declare every attack artifact of the slot again -- the input references this saves.)
        views=lambda wc: SE.views_settings(config, wc),
    script:
        "../workflow/scripts/evaluate.py"


rule gather_metrics:
    input:
        lambda wc: SE.metric_files(config, wc.study),
    output:
        P.ALL_METRICS,
    log:
        "logs/gather_metrics/{study}.json",
        out="logs/gather_metrics/{study}.log",
    script:
        "../workflow/scripts/gather.py"


rule gather_cost:
    input:
        lambda wc: SE.cost_files(config, wc.study),
    output:
        P.COST,
    log:
        "logs/gather_cost/{study}.json",
        out="logs/gather_cost/{study}.log",
    script:
        "../workflow/scripts/gather.py"
