# Study concealed_samples (DCS², Wu et al. AAAI 2024): public pool and priors, the server's
# imprinted model, the client's defended update, attacks (GPU jobs on clusters: cs_attack),
# reconstruction metrics (cs_evaluate), FedAvg accuracies, tables and the reconstruction grid.
# The study's package: gibench.studies.concealed_samples (paths, targets and rule-input
# functions, job functions); the data flow is drawn in its docstring.
from gibench.studies.concealed_samples import paths as CSP
from gibench.studies.concealed_samples import targets as CS
from gibench.pipeline import slot_groups as SG


wildcard_constraints:
    server="honest|imprint",
    cohort="iid|noniid",


rule cs_public:
    input:
        unpack(lambda wc: CS.public_inputs(config, wc)),
    output:
        CSP.CS_PUBLIC,
    log:
        "logs/cs_public/{dataset}.json",
        out="logs/cs_public/{dataset}.log",
    params:
        public=lambda wc: CS.block_param(config, "public", wc.dataset),
    script:
        "../workflow/scripts/cs_public.py"


rule cs_class_means:
    input:
        public=CSP.CS_PUBLIC,
    output:
        CSP.CS_MEANS,
    log:
        "logs/cs_class_means/{dataset}.json",
        out="logs/cs_class_means/{dataset}.log",
    params:
        inputs=lambda wc: CS.block_param(config, "inputs", wc.dataset),
    script:
        "../workflow/scripts/cs_class_means.py"


rule cs_generator:
    input:
        public=CSP.CS_PUBLIC,
    output:
        generator=CSP.CS_GEN,
        log=CSP.CS_GEN_LOG,
    log:
        "logs/cs_generator/{dataset}.json",
        out="logs/cs_generator/{dataset}.log",
    benchmark:
        "logs/cs_generator/{dataset}.benchmark.tsv"
    params:
        generator=lambda wc: CS.block_param(config, "generator"),
    script:
        "../workflow/scripts/cs_generator.py"


rule cs_server_model:
    # the malicious server's model: its imprint block in front of the initial model
    input:
        weights=CSP.CS_INIT,
    output:
        weights=CSP.CS_SERVER,
        info=CSP.CS_SERVER_INFO,
    log:
        "logs/cs_server_model/{dataset}/{model}/{server}.json",
        out="logs/cs_server_model/{dataset}/{model}/{server}.log",
    benchmark:
        "logs/cs_server_model/{dataset}/{model}/{server}.benchmark.tsv"
    wildcard_constraints:
        server="imprint",
    params:
        attacks=lambda wc: CS.block_param(config, "attacks"),
    script:
        "../workflow/scripts/cs_server_model.py"


# group_slots (issue 23): one job per decade of victim slots (s010-s019) runs rule cs_gradient's
# / cs_attack's job for each of its ten slots (gibench.pipeline.slot_groups): the same artifacts,
# ~10x fewer jobs.  The first n slots of the decade after the full ones (s060-s063 of 64 victims),
# n what every dataset has there, run as one job of the *_decade_part twins (SG.Part); other slots
# outside a full decade go slot by slot.
_CS_DECADES = CS.decades(config)
_CS_PART = CS.part(config)
# the per-slot rules match exactly the files their twins do not (SG.per_slot_constraint):
# Snakemake builds no per-slot job for a decade twin's file.


rule cs_gradient:
    input:
        unpack(lambda wc: CS.gradient_inputs(config, wc)),
    output:
        gradient=CSP.CS_GRAD,
        knowledge=CSP.CS_KNOW,
        secrets=CSP.CS_SECRETS,
    log:
        "logs/cs_gradient/{dataset}/{model}/{server}/{cohort}/{defense}/{slot}.json",
        out="logs/cs_gradient/{dataset}/{model}/{server}/{cohort}/{defense}/{slot}.log",
    benchmark:
        "logs/cs_gradient/{dataset}/{model}/{server}/{cohort}/{defense}/{slot}.benchmark.tsv"
    wildcard_constraints:
        **SG.per_slot_constraint(
            [CSP.CS_GRAD, CSP.CS_KNOW, CSP.CS_SECRETS],
            dict(decade=_CS_DECADES),
            workflow.wildcard_constraints,
            part=_CS_PART,
        ),
        defense="[a-z0-9_+.-]+",
    params:
        defense=lambda wc: CS.gradient_rule_params(config, wc),
    script:
        "../workflow/scripts/cs_gradient.py"


rule cs_attack:
    input:
        unpack(lambda wc: CS.attack_inputs(config, wc)),
    output:
        recon=CSP.CS_ATTACK,
    log:
        "logs/cs_attack/{dataset}/{model}/{server}/{cohort}/{defense}/{slot}/{attack}/rep{rep}.json",
        out="logs/cs_attack/{dataset}/{model}/{server}/{cohort}/{defense}/{slot}/{attack}/rep{rep}.log",
    benchmark:
        "logs/cs_attack/{dataset}/{model}/{server}/{cohort}/{defense}/{slot}/{attack}/rep{rep}.benchmark.tsv"
    wildcard_constraints:
        **SG.per_slot_constraint(
            [CSP.CS_ATTACK],
            dict(decade=_CS_DECADES),
            workflow.wildcard_constraints,
            part=_CS_PART,
        ),
        defense="[a-z0-9_+.-]+",
    params:
        attack=lambda wc: CS.attack_rule_params(config, wc),
    script:
        "../workflow/scripts/cs_attack.py"


rule cs_gradient_decade:
    input:
        unpack(SG.slot_inputs(lambda wc: CS.gradient_inputs(config, wc))),
    output:
        **SG.slot_outputs(
            gradient=CSP.CS_GRAD, knowledge=CSP.CS_KNOW, secrets=CSP.CS_SECRETS
        ),
    log:
        "logs/cs_gradient/{dataset}/{model}/{server}/{cohort}/{defense}/{decade}x.json",
        out="logs/cs_gradient/{dataset}/{model}/{server}/{cohort}/{defense}/{decade}x.log",
    benchmark:
        "logs/cs_gradient/{dataset}/{model}/{server}/{cohort}/{defense}/{decade}x.benchmark.tsv"
    wildcard_constraints:
        defense="[a-z0-9_+.-]+",
        decade=_CS_DECADES,
    params:
        **SG.slot_params(defense=lambda wc: CS.gradient_rule_params(config, wc)),
    script:
        "../workflow/scripts/cs_gradient.py"


rule cs_gradient_decade_part:
    input:
        unpack(
            SG.slot_inputs(
                lambda wc: CS.gradient_inputs(config, wc), slots=_CS_PART.slots
            )
        ),
    output:
        **SG.slot_outputs(
            slots=_CS_PART.slots,
            gradient=CSP.CS_GRAD,
            knowledge=CSP.CS_KNOW,
            secrets=CSP.CS_SECRETS,
        ),
    log:
        "logs/cs_gradient/{dataset}/{model}/{server}/{cohort}/{defense}/{decade}x.json",
        out="logs/cs_gradient/{dataset}/{model}/{server}/{cohort}/{defense}/{decade}x.log",
    benchmark:
        "logs/cs_gradient/{dataset}/{model}/{server}/{cohort}/{defense}/{decade}x.benchmark.tsv"
    wildcard_constraints:
        **_CS_PART.constraints,
        defense="[a-z0-9_+.-]+",
    params:
        **SG.slot_params(
            slots=_CS_PART.slots,
            defense=lambda wc: CS.gradient_rule_params(config, wc),
        ),
    script:
        "../workflow/scripts/cs_gradient.py"


rule cs_attack_decade:
    input:
        unpack(SG.slot_inputs(lambda wc: CS.attack_inputs(config, wc))),
    output:
        **SG.slot_outputs(recon=CSP.CS_ATTACK),
    log:
        "logs/cs_attack/{dataset}/{model}/{server}/{cohort}/{defense}/{decade}x/{attack}/rep{rep}.json",
        out="logs/cs_attack/{dataset}/{model}/{server}/{cohort}/{defense}/{decade}x/{attack}/rep{rep}.log",
    benchmark:
        "logs/cs_attack/{dataset}/{model}/{server}/{cohort}/{defense}/{decade}x/{attack}/rep{rep}.benchmark.tsv"
    wildcard_constraints:
        defense="[a-z0-9_+.-]+",
        decade=_CS_DECADES,
    params:
        **SG.slot_params(attack=lambda wc: CS.attack_rule_params(config, wc)),
    script:
        "../workflow/scripts/cs_attack.py"


rule cs_attack_decade_part:
    input:
        unpack(
            SG.slot_inputs(
                lambda wc: CS.attack_inputs(config, wc), slots=_CS_PART.slots
            )
        ),
    output:
        **SG.slot_outputs(slots=_CS_PART.slots, recon=CSP.CS_ATTACK),
    log:
        "logs/cs_attack/{dataset}/{model}/{server}/{cohort}/{defense}/{decade}x/{attack}/rep{rep}.json",
        out="logs/cs_attack/{dataset}/{model}/{server}/{cohort}/{defense}/{decade}x/{attack}/rep{rep}.log",
    benchmark:
        "logs/cs_attack/{dataset}/{model}/{server}/{cohort}/{defense}/{decade}x/{attack}/rep{rep}.benchmark.tsv"
    wildcard_constraints:
        **_CS_PART.constraints,
        defense="[a-z0-9_+.-]+",
    params:
        **SG.slot_params(
            slots=_CS_PART.slots, attack=lambda wc: CS.attack_rule_params(config, wc)
        ),
    script:
        "../workflow/scripts/cs_attack.py"


ruleorder: cs_gradient_decade > cs_gradient
ruleorder: cs_gradient_decade_part > cs_gradient
ruleorder: cs_attack_decade > cs_attack
ruleorder: cs_attack_decade_part > cs_attack


rule cs_evaluate:
    input:
        unpack(lambda wc: CS.evaluate_inputs(config, wc)),
    output:
        CSP.CS_METRICS,
    log:
        "logs/cs_evaluate/{dataset}/{model}/{server}/{cohort}/{defense}/{attack}.json",
        out="logs/cs_evaluate/{dataset}/{model}/{server}/{cohort}/{defense}/{attack}.log",
    benchmark:
        "logs/cs_evaluate/{dataset}/{model}/{server}/{cohort}/{defense}/{attack}.benchmark.tsv"
    wildcard_constraints:
        defense="[a-z0-9_+.-]+",
    params:
        evaluation=lambda wc: CS.block_param(config, "evaluation"),
    script:
        "../workflow/scripts/cs_evaluate.py"


rule cs_gather:
    input:
        lambda wc: CS.metric_files(config),
    output:
        CSP.CS_ALL,
    log:
        "logs/cs_gather/metrics.json",
        out="logs/cs_gather/metrics.log",
    script:
        "../workflow/scripts/cs_gather.py"


rule cs_fl:
    input:
        lambda wc: CS.fl_inputs(config, wc),
    output:
        accuracy=CSP.CS_FL_ACC,
        curve=CSP.CS_FL_CURVE,
    log:
        "logs/cs_fl/{dataset}/{model}/{cohort}/{defense}/seed{seed}.json",
        out="logs/cs_fl/{dataset}/{model}/{cohort}/{defense}/seed{seed}.log",
    benchmark:
        "logs/cs_fl/{dataset}/{model}/{cohort}/{defense}/seed{seed}.benchmark.tsv"
    wildcard_constraints:
        defense="[a-z0-9_+.-]+",
        seed="[0-9]+",
    params:
        run=lambda wc: CS.fl_params(config, wc.dataset, wc.model, wc.cohort, wc.defense),
    script:
        "../workflow/scripts/cs_fl.py"


rule cs_fl_gather:
    input:
        lambda wc: CS.fl_files(config),
    output:
        CSP.CS_FL_ALL,
    log:
        "logs/cs_fl_gather/accuracy.json",
        out="logs/cs_fl_gather/accuracy.log",
    script:
        "../workflow/scripts/cs_fl_gather.py"


rule cs_table:
    input:
        unpack(lambda wc: CS.table_inputs(config, wc.table)),
    output:
        csv=CSP.CS_TABLE.replace("{ext}", "csv"),
        md=CSP.CS_TABLE.replace("{ext}", "md"),
        html=report_table(CSP.CS_TABLE.replace("{ext}", "html")),
    log:
        "logs/cs_table/{table}.json",
        out="logs/cs_table/{table}.log",
    wildcard_constraints:
        table="table[0-9]+",
    params:
        # the blocks a table reads, verbatim, and the digest of config/paper_values/concealed_samples.yaml
        settings=lambda wc: CS.table_rule_params(config),
    script:
        "../workflow/scripts/cs_table.py"


rule cs_figure:
    input:
        unpack(lambda wc: CS.figure_inputs(config, wc.figure)),
    output:
        png=report_figure(CSP.CS_FIGURE.replace("{ext}", "png")),
        pdf=CSP.CS_FIGURE.replace("{ext}", "pdf"),
    log:
        "logs/cs_figure/{figure}.json",
        out="logs/cs_figure/{figure}.log",
    wildcard_constraints:
        figure="fig[0-9]+",
    script:
        "../workflow/scripts/cs_figure.py"


# results/tables/concealed_samples/tableN.* and results/figures/concealed_samples/figN.* also
# match the generic table/figure rules' patterns
ruleorder: cs_table > table
ruleorder: cs_figure > figure
