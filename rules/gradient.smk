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
    script:
        "../workflow/scripts/gradient.py"
