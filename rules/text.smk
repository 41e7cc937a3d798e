# Text path (BERT / GPT-2): downloads of pretrained checkpoints and of LAMP's BERT-vocabulary
# LM prior.  localrules: the login node has internet, compute nodes may not.


rule download_pretrained:
    # a hub checkpoint (model weights + tokenizer files) saved under <hub_dir>/models/<owner>__<name>;
    # the model rule of a `pretrained:` text model and LAMP's GPT-2 prior read it
    output:
        P.hub(config, "models/{checkpoint}/config.json"),
    log:
        "logs/download_pretrained/{checkpoint}.json",
        out="logs/download_pretrained/{checkpoint}.log",
    wildcard_constraints:
        checkpoint="[A-Za-z0-9_.-]+",
    script:
        "../workflow/scripts/download_pretrained.py"


rule download_lm_prior:
    # LAMP's prior for BERT: GBDA's GPT-2-architecture LM over the BERT vocabulary
    output:
        P.hub(config, "lamp/{file}.pth"),
    log:
        "logs/download_lm_prior/{file}.json",
        out="logs/download_lm_prior/{file}.log",
    script:
        "../workflow/scripts/download_lm_prior.py"


localrules:
    download_pretrained,
    download_lm_prior,
