# FedAvg utility runs (gibench.fl): one training job per (study, dataset, model, defense
# combination, seed) — a GPU job on clusters (rule fl_train) — then round checkpoints for
# attacks on trained models, the gathered accuracies, the accuracy table and the curves.
from gibench import fl_plan as FL


rule fl_train:
    input:
        lambda wc: FL.data_inputs(config, wc.study, wc.dataset),
    output:
        final=FL.FL_FINAL,
        best=FL.FL_BEST,
        curve=FL.FL_CURVE,
        accuracy=FL.FL_ACC,
        rounds=directory(FL.FL_ROUNDS),
    log:
        "logs/fl_train/{study}/{dataset}/{model}/{defense}/seed{seed}.json",
        out="logs/fl_train/{study}/{dataset}/{model}/{defense}/seed{seed}.log",
    benchmark:
        "logs/fl_train/{study}/{dataset}/{model}/{defense}/seed{seed}.benchmark.tsv"
    wildcard_constraints:
        defense=FL.DEFENSE_PATTERN,
        seed="[0-9]+",
    params:
        # everything the run depends on: a change re-runs only the affected runs
        run=lambda wc: FL.run_params(config, wc.study, wc.dataset, wc.model, wc.defense),
    script:
        "../workflow/scripts/fl_train.py"


rule fl_checkpoint:
    # the global model after round r ("round0042") of a run, for gradient/attack rules
    input:
        rounds=FL.FL_ROUNDS,
        accuracy=FL.FL_ACC,
    output:
        FL.FL_CHECKPOINT,
    log:
        "logs/fl_checkpoint/{study}/{dataset}/{model}/{defense}/seed{seed}/round{round}.json",
        out="logs/fl_checkpoint/{study}/{dataset}/{model}/{defense}/seed{seed}/round{round}.log",
    wildcard_constraints:
        defense=FL.DEFENSE_PATTERN,
        seed="[0-9]+",
        round="[0-9]{4}",
    script:
        "../workflow/scripts/fl_checkpoint.py"


rule fl_gather:
    input:
        lambda wc: FL.run_files(config, wc.study, FL.FL_ACC),
    output:
        FL.FL_ALL_ACC,
    log:
        "logs/fl_gather/{study}.json",
        out="logs/fl_gather/{study}.log",
    script:
        "../workflow/scripts/fl_gather.py"


rule fl_table:
    input:
        accuracy=FL.FL_ALL_ACC,
    output:
        csv=FL.FL_TABLE.replace("{ext}", "csv"),
        md=FL.FL_TABLE.replace("{ext}", "md"),
        html=report_table(FL.FL_TABLE.replace("{ext}", "html")),
    log:
        "logs/fl_table/{study}.json",
        out="logs/fl_table/{study}.log",
    params:
        settings=lambda wc: {
            k: v for k, v in config["studies"][wc.study]["fl"].items() if k != "runs"
        },
    script:
        "../workflow/scripts/fl_table.py"


rule fl_figure:
    input:
        curves=lambda wc: FL.run_files(config, wc.study, FL.FL_CURVE),
    output:
        png=report_figure(FL.FL_FIGURE.replace("{ext}", "png")),
        pdf=FL.FL_FIGURE.replace("{ext}", "pdf"),
    log:
        "logs/fl_figure/{study}.json",
        out="logs/fl_figure/{study}.log",
    script:
        "../workflow/scripts/fl_figure.py"


# results/figures/<study>/fl_curves.* also matches the generic figure rule's pattern
ruleorder: fl_figure > figure
