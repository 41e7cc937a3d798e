# Study stochastic_defenses (paper B, "Combining Stochastic Defenses to Resist Gradient
# Inversion"): seeded models with their model-side defenses, the client's defended gradient
# (update + knowledge for the server, secrets kept apart), the attacks (GPU jobs on clusters:
# sd_attack), the reconstruction metrics against the victims (sd_evaluate), Tables 1-5 and the
# reconstruction grid.  The study's package, gibench.studies.stochastic_defenses: paths (SDP),
# rule-input and rule-params functions (SD), the spec and its config check, the jobs.
from gibench.studies.stochastic_defenses import paths as SDP
from gibench.studies.stochastic_defenses import targets as SD
from gibench.pipeline import slot_groups as SG


rule sd_model:
    # seeded initial weights; the privacy module (pm) adds parameters, dropout does not
    output:
        SDP.WEIGHTS,
    log:
        "logs/sd_model/{dataset}/{model}/pm_{pm}.json",
        out="logs/sd_model/{dataset}/{model}/pm_{pm}.log",
    wildcard_constraints:
        pm="|".join(SDP.PM_CHOICES),
    script:
        "../workflow/scripts/sd_model.py"


# group_slots (issue 23): one job per decade of victim slots (s010-s019) runs rule sd_gradient's
# / sd_attack's job for each of its ten slots (gibench.pipeline.slot_groups): the same artifacts,
# ~10x fewer jobs.  The first n slots of the last, partial decade (s120-s127 of 128 victims) run as
# one job of the *_decade_part twins (SG.Part); a lone slot left over goes slot by slot.
_SD_DECADES = SD.decades(config)
_SD_PART = SD.part(config)
# the per-slot rules match exactly the files their twins do not (SG.per_slot_constraint):
# Snakemake builds no per-slot job for a decade twin's file.


rule sd_gradient:
    input:
        unpack(lambda wc: SD.model_inputs(config, wc)),
        victims=P.VICTIMS,
    output:
        shared=SDP.UPDATE,
        secrets=SDP.SECRETS,
        knowledge=SDP.KNOWLEDGE,
    log:
        "logs/sd_gradient/{dataset}/{model}/{defense}/{slot}.json",
        out="logs/sd_gradient/{dataset}/{model}/{defense}/{slot}.log",
    benchmark:
        "logs/sd_gradient/{dataset}/{model}/{defense}/{slot}.benchmark.tsv"
    wildcard_constraints:
        **SG.per_slot_constraint(
            [SDP.UPDATE, SDP.SECRETS, SDP.KNOWLEDGE],
            dict(decade=_SD_DECADES),
            workflow.wildcard_constraints,
            part=_SD_PART,
        ),
        defense=SDP.DEFENSE_PATTERN,
    params:
        defenses=lambda wc: SD.defense_params(config, wc.defense),
        gradient=lambda wc: SD.gradient_params(config),
    script:
        "../workflow/scripts/sd_gradient.py"


rule sd_attack:
    # the server's job: the secrets file is an input only for attacks marked oracle: true
    input:
        unpack(lambda wc: SD.attack_inputs(config, wc)),
    output:
        recon=SDP.RECON,
    log:
        "logs/sd_attack/{dataset}/{model}/{defense}/{slot}/{attack}/rep{rep}.json",
        out="logs/sd_attack/{dataset}/{model}/{defense}/{slot}/{attack}/rep{rep}.log",
    benchmark:
        "logs/sd_attack/{dataset}/{model}/{defense}/{slot}/{attack}/rep{rep}.benchmark.tsv"
    wildcard_constraints:
        **SG.per_slot_constraint(
            [SDP.RECON],
            dict(decade=_SD_DECADES),
            workflow.wildcard_constraints,
            part=_SD_PART,
        ),
        defense=SDP.DEFENSE_PATTERN,
    params:
        attack=lambda wc: SD.attack_params(config, wc),
    script:
        "../workflow/scripts/sd_attack.py"


rule sd_gradient_decade:
    input:
        unpack(
            SG.slot_inputs(lambda wc: SD.model_inputs(config, wc), victims=P.VICTIMS)
        ),
    output:
        **SG.slot_outputs(
            shared=SDP.UPDATE, secrets=SDP.SECRETS, knowledge=SDP.KNOWLEDGE
        ),
    log:
        "logs/sd_gradient/{dataset}/{model}/{defense}/{decade}x.json",
        out="logs/sd_gradient/{dataset}/{model}/{defense}/{decade}x.log",
    benchmark:
        "logs/sd_gradient/{dataset}/{model}/{defense}/{decade}x.benchmark.tsv"
    wildcard_constraints:
        defense=SDP.DEFENSE_PATTERN,
        decade=_SD_DECADES,
    params:
        **SG.slot_params(
            defenses=lambda wc: SD.defense_params(config, wc.defense),
            gradient=lambda wc: SD.gradient_params(config),
        ),
    script:
        "../workflow/scripts/sd_gradient.py"


rule sd_gradient_decade_part:
    input:
        unpack(
            SG.slot_inputs(
                lambda wc: SD.model_inputs(config, wc),
                victims=P.VICTIMS,
                slots=_SD_PART.slots,
            )
        ),
    output:
        **SG.slot_outputs(
            slots=_SD_PART.slots,
            shared=SDP.UPDATE,
            secrets=SDP.SECRETS,
            knowledge=SDP.KNOWLEDGE,
        ),
    log:
        "logs/sd_gradient/{dataset}/{model}/{defense}/{decade}x.json",
        out="logs/sd_gradient/{dataset}/{model}/{defense}/{decade}x.log",
    benchmark:
        "logs/sd_gradient/{dataset}/{model}/{defense}/{decade}x.benchmark.tsv"
    wildcard_constraints:
        **_SD_PART.constraints,
        defense=SDP.DEFENSE_PATTERN,
    params:
        **SG.slot_params(
            slots=_SD_PART.slots,
            defenses=lambda wc: SD.defense_params(config, wc.defense),
            gradient=lambda wc: SD.gradient_params(config),
        ),
    script:
        "../workflow/scripts/sd_gradient.py"


rule sd_attack_decade:
    input:
        unpack(SG.slot_inputs(lambda wc: SD.attack_inputs(config, wc))),
    output:
        **SG.slot_outputs(recon=SDP.RECON),
    log:
        "logs/sd_attack/{dataset}/{model}/{defense}/{decade}x/{attack}/rep{rep}.json",
        out="logs/sd_attack/{dataset}/{model}/{defense}/{decade}x/{attack}/rep{rep}.log",
    benchmark:
        "logs/sd_attack/{dataset}/{model}/{defense}/{decade}x/{attack}/rep{rep}.benchmark.tsv"
    wildcard_constraints:
        defense=SDP.DEFENSE_PATTERN,
        decade=_SD_DECADES,
    params:
        **SG.slot_params(attack=lambda wc: SD.attack_params(config, wc)),
    script:
        "../workflow/scripts/sd_attack.py"


rule sd_attack_decade_part:
    input:
        unpack(
            SG.slot_inputs(
                lambda wc: SD.attack_inputs(config, wc), slots=_SD_PART.slots
            )
        ),
    output:
        **SG.slot_outputs(slots=_SD_PART.slots, recon=SDP.RECON),
    log:
        "logs/sd_attack/{dataset}/{model}/{defense}/{decade}x/{attack}/rep{rep}.json",
        out="logs/sd_attack/{dataset}/{model}/{defense}/{decade}x/{attack}/rep{rep}.log",
    benchmark:
        "logs/sd_attack/{dataset}/{model}/{defense}/{decade}x/{attack}/rep{rep}.benchmark.tsv"
    wildcard_constraints:
        **_SD_PART.constraints,
        defense=SDP.DEFENSE_PATTERN,
    params:
        **SG.slot_params(
            slots=_SD_PART.slots, attack=lambda wc: SD.attack_params(config, wc)
        ),
    script:
        "../workflow/scripts/sd_attack.py"


ruleorder: sd_gradient_decade > sd_gradient
ruleorder: sd_gradient_decade_part > sd_gradient
ruleorder: sd_attack_decade > sd_attack
ruleorder: sd_attack_decade_part > sd_attack


rule sd_evaluate:
    # reconstruction metrics against the victims (SSIM, MSE, PSNR), one row per slot
    input:
        victims=P.VICTIMS,
        recons=lambda wc: SD.restart_files(config, wc),
    output:
        SDP.METRICS,
    log:
        "logs/sd_evaluate/{dataset}/{model}/{defense}/{attack}.json",
        out="logs/sd_evaluate/{dataset}/{model}/{defense}/{attack}.log",
    benchmark:
        "logs/sd_evaluate/{dataset}/{model}/{defense}/{attack}.benchmark.tsv"
    wildcard_constraints:
        defense=SDP.DEFENSE_PATTERN,
    params:
        evaluation=lambda wc: SD.evaluation_params(config),
    script:
        "../workflow/scripts/sd_evaluate.py"


rule sd_gather:
    input:
        lambda wc: SD.metric_files(config),
    output:
        SDP.ALL_METRICS,
    log:
        "logs/sd_gather/rows.json",
        out="logs/sd_gather/rows.log",
    script:
        "../workflow/scripts/sd_gather.py"


rule sd_table:
    input:
        unpack(lambda wc: SD.table_inputs(config, wc)),
    output:
        csv=SDP.TABLE.replace("{ext}", "csv"),
        md=SDP.TABLE.replace("{ext}", "md"),
        html=report_table(SDP.TABLE.replace("{ext}", "html")),
    log:
        "logs/sd_table/{table}.json",
        out="logs/sd_table/{table}.log",
    wildcard_constraints:
        table="table[0-9]+",
    params:
        settings=lambda wc: SD.table_settings(config, wc.table),
    script:
        "../workflow/scripts/sd_table.py"


rule sd_figure:
    input:
        unpack(lambda wc: SD.figure_inputs(config, wc)),
    output:
        png=report_figure(SDP.FIGURE.replace("{ext}", "png")),
        pdf=SDP.FIGURE.replace("{ext}", "pdf"),
    log:
        "logs/sd_figure/{figure}.json",
        out="logs/sd_figure/{figure}.log",
    wildcard_constraints:
        figure="fig[0-9]+[a-z0-9_]*",
    params:
        settings=lambda wc: SD.figure_settings(config, wc.figure),
    script:
        "../workflow/scripts/sd_figure.py"


# results/tables/stochastic_defenses/table<k>.* and results/figures/stochastic_defenses/*
# also match the generic table/figure rules' patterns
ruleorder: sd_table > table
ruleorder: sd_figure > figure
