"""Text classifiers for the LAMP / DAGER studies: ``bert`` and ``gpt2``.

Both are Hugging Face ``transformers`` sequence classifiers built from configs, with
random weights drawn under the seed :func:`gibench.models.build_model` sets:

* ``size: base`` - the real ``bert-base-uncased`` / ``gpt2`` configurations, written out
  below (:data:`BERT_BASE`, :data:`GPT2_BASE`).  With 2 labels they have 109,483,778 and
  124,441,344 parameters, the counts the selective-encryption paper states.
* ``size: demo`` - the same architectures (same vocabulary, tokenizer, layer types and
  special tokens), reduced in depth and width (:data:`BERT_DEMO`, :data:`GPT2_DEMO`) so
  that LAMP and the significance metrics run on a CPU in the embedded demo.
* ``pretrained: <hub name or local dir>`` - real weights via ``from_pretrained`` (the
  classification head stays randomly initialised under the seed when the checkpoint has
  none, as in LAMP, which attacks a not-fine-tuned ``bert-base-uncased``).  When the
  weights are not on this machine the builder raises :class:`ModelUnavailable`, naming the
  download rule that fetches them.
* ``config_overrides: {key: value}`` - any config field (e.g. ``num_hidden_layers``).

Deviations from the raw HF classes (documented, deliberate):

* ``forward`` returns the **logits tensor** (B x num_labels), not a ``ModelOutput``, so the
  pipeline's ``client_gradient(model, input_ids, labels)`` treats text and image models
  alike.  ``forward(..., return_output=True)`` gives the HF output object.
* attention is built with ``attn_implementation="eager"`` by default: LAMP and the Sens
  metric differentiate the gradient again (double backward), which fused SDPA/flash
  kernels on CUDA do not all support.  Eager is mathematically the same attention.
* GPT-2: pad token = eos (50256), as in the LAMP GPT-2 port and DAGER.  The sequence
  representation is the hidden state of the last non-pad position; the classifier pools it
  from ``attention_mask`` when given (right padding), else from ``input_ids`` exactly as
  HF does (rightmost token != pad), else (``inputs_embeds`` without a mask) the last
  position.  GPT-2's ``score`` head is a bias-free ``nn.Linear`` (HF's definition), so it
  contributes ``n_embd * num_labels`` parameters and no bias.

Parameter names are HF's (``bert.embeddings.word_embeddings.weight``,
``transformer.h.0.attn.c_attn.weight``, ...); ``named_parameters()`` order is the order of
the shared gradient.  :func:`text_model_info` describes what an attack or a significance
metric needs to know about a model (embedding table, special ids, block structure).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .registry import MODELS


class ModelUnavailable(RuntimeError):
    """Weights a config asks for are not on this machine; the message says how to get them."""


# --------------------------------------------------------------------------- configs

#: bert-base-uncased (config.json of the hub checkpoint), written out.
BERT_BASE: dict[str, Any] = dict(
    vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
    initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0,
)
#: Demo size: same vocabulary / tokenizer / special tokens, 2 layers of width 128
#: (2 heads of 64, FFN 512).  ~4.3 M parameters, of which 3.9 M are the word embeddings
#: (not used by LAMP).
BERT_DEMO: dict[str, Any] = dict(BERT_BASE, hidden_size=128, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=512)

#: gpt2 (config.json of the hub checkpoint), written out; pad = eos (gibench/LAMP/DAGER).
GPT2_BASE: dict[str, Any] = dict(
    vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=None,
    activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
    layer_norm_epsilon=1e-5, initializer_range=0.02, bos_token_id=50256,
    eos_token_id=50256, pad_token_id=50256,
)
#: Demo size: same BPE vocabulary, 3 blocks of width 128 (4 heads of 32), 256 positions.  Three blocks,
#: not two: DAGER reads blocks 0 and 1, and the gradient of the *last* block only sees the pooled
#: position through its queries (rank <= 1 + 2 * heads), so block 1 must not be the last.
GPT2_DEMO: dict[str, Any] = dict(GPT2_BASE, n_embd=128, n_layer=3, n_head=4, n_positions=256)

SIZES = {"bert": {"base": BERT_BASE, "demo": BERT_DEMO},
         "gpt2": {"base": GPT2_BASE, "demo": GPT2_DEMO}}

#: hub ids of the real checkpoints (``pretrained: true`` means these).
HUB_NAMES = {"bert": "google-bert/bert-base-uncased", "gpt2": "openai-community/gpt2"}
#: tokenizer files bundled under ``resources/text`` and the hub tokenizer names.
BUNDLED_TOKENIZER = {"bert": "bert_base_uncased", "gpt2": "gpt2_tokenizer"}

#: Mean L2 norm of the word-embedding rows of the pretrained checkpoints, as the LAMP code
#: and its GPT-2 port hard-code them (``init_size``).  Random-weight models use their own
#: measured mean norm instead (see ``gibench.attacks.lamp``).
REFERENCE_EMBED_NORM = {"bert": 1.4, "gpt2": 3.98}


# --------------------------------------------------------------------------- classes

def _hf():
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - transformers is a core dependency
        raise ModelUnavailable("the text models need the `transformers` package") from e
    return transformers


def _classes():
    tr = _hf()

    class BertClassifier(tr.BertForSequenceClassification):
        """``BertForSequenceClassification`` whose ``forward`` returns the logits tensor."""

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                    inputs_embeds=None, labels=None, return_output: bool = False, **kwargs):
            out = super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids, position_ids=position_ids,
                                  inputs_embeds=inputs_embeds, labels=labels, return_dict=True, **kwargs)
            return out if return_output else out.logits

    class GPT2Classifier(tr.GPT2ForSequenceClassification):
        """``GPT2ForSequenceClassification`` whose ``forward`` returns the logits tensor and
        pools the last attended position (see the module docstring)."""

        def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                    labels=None, return_output: bool = False, **kwargs):
            kwargs.pop("token_type_ids", None)
            if return_output:
                return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                       position_ids=position_ids, inputs_embeds=inputs_embeds,
                                       labels=labels, return_dict=True, **kwargs)
            h = self.transformer(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                 inputs_embeds=inputs_embeds, use_cache=False, **kwargs).last_hidden_state
            logits = self.score(h)
            b, t = logits.shape[:2]
            pos = torch.arange(t, device=logits.device)
            if attention_mask is not None:
                last = (pos * attention_mask.to(logits.device, torch.long)).argmax(-1)
            elif input_ids is not None and self.config.pad_token_id is not None:
                last = (pos * (input_ids != self.config.pad_token_id).to(torch.long)).argmax(-1)
            else:
                last = torch.full((b,), t - 1, device=logits.device, dtype=torch.long)
            return logits[torch.arange(b, device=logits.device), last]

    return BertClassifier, GPT2Classifier


_CLASSES: tuple | None = None


def model_class(family: str):
    """The classifier class of ``family`` (defined on first use: importing transformers
    costs seconds, and image-only jobs never need it)."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _classes()
        for cls in _CLASSES:  # make them importable/picklable as gibench.models.text.<name>
            cls.__qualname__ = cls.__name__
            cls.__module__ = __name__
            globals()[cls.__name__] = cls
    return {"bert": _CLASSES[0], "gpt2": _CLASSES[1]}[family]


def __getattr__(name: str):  # PEP 562: `from gibench.models.text import BertClassifier`
    if name in ("BertClassifier", "GPT2Classifier"):
        return model_class("bert" if name.startswith("Bert") else "gpt2")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_config(family: str, size: str = "base", num_classes: int = 2,
                attn_implementation: str = "eager", config_overrides: dict | None = None):
    tr = _hf()
    try:
        base = SIZES[family][size]
    except KeyError:
        raise ValueError(f"model {family!r}: size must be one of {sorted(SIZES[family])}, not {size!r}") from None
    kw = dict(base, **(config_overrides or {}))
    cls = tr.BertConfig if family == "bert" else tr.GPT2Config
    cfg = cls(num_labels=int(num_classes), **kw)
    cfg._attn_implementation = attn_implementation
    return cfg


def hub_model_dir(hub_dir: str | Path, name: str) -> Path:
    """Where the download rule stores a hub checkpoint: ``<hub_dir>/models/<owner>__<name>``."""
    return Path(hub_dir) / "models" / name.replace("/", "__")


def download_pretrained(name: str, hub_dir: str | Path, family: str | None = None) -> Path:
    """Fetch a hub checkpoint verbatim (config, weights, tokenizer files) into
    :func:`hub_model_dir` with ``huggingface_hub.snapshot_download``; run by the
    ``download_pretrained`` rule on a machine with internet.  ``family`` is not needed (the
    files are kept as published, heads included, so the same directory serves the
    classifier and, for GPT-2, LAMP's causal-LM prior)."""
    out = hub_model_dir(hub_dir, name)
    tmp = out.with_name(out.name + ".partial")
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id=name, local_dir=str(tmp), allow_patterns=["*.json", "*.safetensors", "*.txt"])
        if not list(tmp.glob("*.safetensors")):  # older repositories publish only PyTorch pickles
            snapshot_download(repo_id=name, local_dir=str(tmp), allow_patterns=["pytorch_model*.bin"])
    except Exception as e:  # network errors come in many types
        raise ModelUnavailable(f"could not download {name!r} from the Hugging Face hub: "
                               f"{type(e).__name__}: {e}") from e
    if not (tmp / "config.json").exists():
        raise ModelUnavailable(f"{name!r}: the hub snapshot has no config.json (not a transformers checkpoint?)")
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def _resolve_pretrained(family: str, pretrained: str | bool, hub_dir: str | Path | None) -> str:
    if pretrained is True:
        pretrained = HUB_NAMES[family]
    name = str(pretrained)
    if Path(name).is_dir():
        return name
    if hub_dir is not None and hub_model_dir(hub_dir, name).is_dir():
        return str(hub_model_dir(hub_dir, name))
    return name


def load_pretrained(family: str, pretrained: str | bool, num_classes: int, attn_implementation: str = "eager",
                    hub_dir: str | Path | None = None, local_files_only: bool | None = None) -> nn.Module:
    src = _resolve_pretrained(family, pretrained, hub_dir)
    cls = model_class(family)
    kw: dict[str, Any] = {"num_labels": int(num_classes), "attn_implementation": attn_implementation}
    if family == "gpt2":
        kw["pad_token_id"] = GPT2_BASE["eos_token_id"]
    if local_files_only is not None:
        kw["local_files_only"] = local_files_only
    try:
        model = cls.from_pretrained(src, **kw)
    except Exception as e:
        where = hub_model_dir(hub_dir if hub_dir is not None else "resources/hub", str(pretrained))
        raise ModelUnavailable(
            f"pretrained weights {pretrained!r} for model {family!r} are not available here "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Fetch them with the "
            f"download rule on a machine with internet (snakemake --cores 1 {where}/config.json), "
            f"or point `pretrained:` at a local checkpoint directory, or drop `pretrained:` to use "
            f"random weights (size: base | demo).") from e
    model.gibench_pretrained = str(pretrained)
    return model


def _build(family: str, num_classes: int, in_shape=None, *, size: str = "base",
           pretrained: str | bool | None = None, attn_implementation: str = "eager",
           config_overrides: dict | None = None, hub_dir: str | Path | None = None,
           local_files_only: bool | None = None, load_weights: bool = True, **unknown) -> nn.Module:
    """``in_shape`` is ignored (text models take token ids of any length up to the
    position table); it is accepted so text and image models share one builder signature.

    ``load_weights=False`` with ``pretrained``: only the checkpoint's *architecture*
    (its ``config.json``) is read and the weights stay random, for a caller that loads
    them from a gibench weights artifact right after (the pipeline's jobs after the model
    rule); the model still reports ``gibench_pretrained``."""
    if unknown:
        raise ValueError(f"model {family!r}: unknown option(s) {sorted(unknown)}; known: size, pretrained, "
                         f"attn_implementation, config_overrides, hub_dir, local_files_only")
    if pretrained:
        if size != "base" or config_overrides:
            raise ValueError(f"model {family!r}: `pretrained` fixes the architecture; drop size/config_overrides")
        if load_weights:
            model = load_pretrained(family, pretrained, num_classes, attn_implementation, hub_dir, local_files_only)
        else:
            model = model_class(family)(pretrained_config(family, pretrained, num_classes, attn_implementation,
                                                          hub_dir, local_files_only))
            model.gibench_pretrained = str(pretrained)
    else:
        model = model_class(family)(make_config(family, size, num_classes, attn_implementation, config_overrides))
        model.gibench_pretrained = None
    model.gibench_family = family
    model.gibench_size = "pretrained" if pretrained else size
    return model.eval()


def pretrained_config(family: str, pretrained: str | bool, num_classes: int, attn_implementation: str = "eager",
                      hub_dir: str | Path | None = None, local_files_only: bool | None = None):
    """The configuration of a pretrained checkpoint (no weights read)."""
    tr = _hf()
    src = _resolve_pretrained(family, pretrained, hub_dir)
    kw: dict[str, Any] = {"num_labels": int(num_classes)}
    if family == "gpt2":
        kw["pad_token_id"] = GPT2_BASE["eos_token_id"]
    if local_files_only is not None:
        kw["local_files_only"] = local_files_only
    try:
        cfg = tr.AutoConfig.from_pretrained(src, **kw)
    except Exception as e:
        raise ModelUnavailable(
            f"the configuration of {pretrained!r} is not available here ({type(e).__name__}); fetch the "
            f"checkpoint with the download rule (snakemake --cores 1 "
            f"{hub_model_dir(hub_dir or 'resources/hub', str(pretrained))}/config.json)") from e
    cfg._attn_implementation = attn_implementation
    return cfg


@MODELS.register("bert")
def bert(num_classes: int, in_shape=None, **opts) -> nn.Module:
    """BertForSequenceClassification (bert-base-uncased architecture; 109,483,778 params
    with 2 labels at ``size: base``)."""
    return _build("bert", num_classes, in_shape, **opts)


@MODELS.register("gpt2")
def gpt2(num_classes: int, in_shape=None, **opts) -> nn.Module:
    """GPT2ForSequenceClassification (gpt2 architecture, pad = eos; 124,441,344 params with
    2 labels at ``size: base``)."""
    return _build("gpt2", num_classes, in_shape, **opts)


# --------------------------------------------------------------------------- one-argument view

class BoundTextModel(nn.Module):
    """``model(x)`` for a gibench text classifier, with the batch's ``attention_mask`` bound.

    ``x`` may be token ids (int64, B x T) or input embeddings (float, B x T x d, passed as
    ``inputs_embeds``), so the significance metrics (which call ``model(x)``) and the
    client gradient work on text models as on image models.  The wrapper registers the
    wrapped model's *children* as its own, so ``named_parameters()`` / ``named_modules()``
    give exactly the wrapped model's names (``transformer.h.0.attn.c_attn.weight``, ...) in
    the same order, and ``torch.func.functional_call(wrapper, params, (x,))`` swaps the
    parameters the wrapped model's ``forward`` uses (the module objects are shared)."""

    def __init__(self, model: nn.Module, attention_mask: torch.Tensor | None = None):
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "inner", model)   # not a child: names stay unprefixed
        self.attention_mask = attention_mask
        self.config = model.config
        for attr in ("gibench_family", "gibench_size", "gibench_pretrained"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.attention_mask
        if mask is not None and mask.device != x.device:
            mask = mask.to(x.device)
        if x.is_floating_point():
            return self.inner(inputs_embeds=x, attention_mask=mask)
        return self.inner(input_ids=x, attention_mask=mask)

    def train(self, mode: bool = True):
        super().train(mode)
        self.inner.train(mode)
        return self

    def get_input_embeddings(self) -> nn.Module:
        return self.inner.get_input_embeddings()


def pad_batch(sequences, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token-id lists with ``pad_id``: (input_ids, attention_mask), both B x T int64."""
    seqs = [list(map(int, s)) for s in sequences]
    if not seqs or min(map(len, seqs)) < 1:
        raise ValueError("pad_batch: every sequence needs at least one token")
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask


#: parameter name of the input word-embedding table per family (HF naming)
EMBEDDING_PARAM = {"bert": "bert.embeddings.word_embeddings.weight", "gpt2": "transformer.wte.weight"}
#: pad id per family (bert-base-uncased [PAD]; GPT-2 pad = eos)
PAD_ID = {"bert": 0, "gpt2": 50256}


# --------------------------------------------------------------------------- language-model prior

#: Architecture of LAMP's BERT-vocabulary prior ``transformer_wikitext-103.pth`` (from
#: GBDA): a GPT-2-style causal LM, 24 layers, width 1024, 8 heads, ReLU, vocab 30522.
BERT_VOCAB_PRIOR = dict(vocab_size=30522, n_embd=1024, n_layer=24, n_head=8, activation_function="relu",
                        n_positions=1024)


def load_lm_prior(spec: str | Path, *, hub_dir: str | Path | None = None, device: str | torch.device = "cpu",
                  local_files_only: bool | None = None) -> nn.Module:
    """The causal LM that scores LAMP's discrete reorderings.

    ``spec`` is a hub name or a local ``from_pretrained`` directory (e.g. ``gpt2`` for the
    GPT-2 port, where the LM is GPT-2 itself), or a ``.pth`` state dict in GPT-2 key layout
    with the BERT vocabulary (LAMP's prior; loaded into :data:`BERT_VOCAB_PRIOR`).  The
    returned model maps ``input_ids`` to an object with ``.logits`` (B x T x V)."""
    tr = _hf()
    spec = str(spec)
    if spec.endswith((".pth", ".pt")):
        if not Path(spec).exists():
            raise ModelUnavailable(f"LM prior {spec!r} is not on this machine; the download rule fetches it "
                                   f"(LAMP distributes it at https://files.sri.inf.ethz.ch/lamp/)")
        sd = torch.load(spec, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        if not (isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values())):
            raise ModelUnavailable(f"{spec}: not a plain tensor state dict; convert it to a transformers "
                                   f"GPT2LMHeadModel directory and pass that directory instead")
        model = tr.GPT2LMHeadModel(tr.GPT2Config(**BERT_VOCAB_PRIOR))
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if unexpected or [k for k in missing if not k.endswith(("attn.bias", "masked_bias", "lm_head.weight"))]:
            raise ModelUnavailable(f"{spec}: keys do not match a GPT-2 LM with the BERT vocabulary "
                                   f"(missing {missing[:3]}, unexpected {unexpected[:3]}); convert it to a "
                                   f"transformers GPT2LMHeadModel directory")
        if "lm_head.weight" in missing:
            model.tie_weights()
        return model.eval().to(device)
    src = spec
    if not Path(spec).is_dir() and hub_dir is not None and hub_model_dir(hub_dir, spec).is_dir():
        src = str(hub_model_dir(hub_dir, spec))
    kw = {} if local_files_only is None else {"local_files_only": local_files_only}
    try:
        model = tr.AutoModelForCausalLM.from_pretrained(src, **kw)
    except Exception as e:
        raise ModelUnavailable(
            f"LM prior {spec!r} is not available here ({type(e).__name__}). Fetch it with the download "
            f"rule on a machine with internet (snakemake --cores 1 "
            f"{hub_model_dir(hub_dir or 'resources/hub', spec)}/config.json), or use `prior: none`.") from e
    return model.eval().to(device)


# --------------------------------------------------------------------------- model description

_UNUSED = re.compile(r"^\[unused\d+\]$")


def text_model_info(model: nn.Module, tokenizer=None) -> dict[str, Any]:
    """What attacks and significance metrics need to know about a text model.

    Keys: ``family`` ('bert' | 'gpt2'), ``size``, ``pretrained`` (name or None),
    ``embedding`` (the input word-embedding ``nn.Embedding``), ``embedding_param`` (its
    parameter name), ``embedding_used_by_attacker`` (False: LAMP feeds ``inputs_embeds``,
    so the word-embedding gradient never enters its objective; DAGER reads the table but
    not its gradient), ``vocab_size``, ``hidden_size``, ``n_layers``, ``block_prefixes``
    (one parameter-name prefix per transformer block, input to output),
    ``attention_prefixes`` (the attention sub-modules of each block), ``special_ids``
    (name -> id), ``pinned`` (how LAMP pins special positions), ``unused_ids`` (ids the
    nearest-token projection excludes: BERT's ``[unusedN]`` tokens), ``reference_embed_norm``.
    """
    family = getattr(model, "gibench_family", None)
    if family is None:
        mt = getattr(getattr(model, "config", None), "model_type", None)
        family = {"bert": "bert", "gpt2": "gpt2"}.get(mt)
    if family not in ("bert", "gpt2"):
        raise ValueError(f"text_model_info: not a gibench text model ({type(model).__name__})")
    cfg = model.config
    emb = model.get_input_embeddings()
    emb_name = next(n for n, p in model.named_parameters() if p is emb.weight)
    if family == "bert":
        n_layers = cfg.num_hidden_layers
        blocks = [f"bert.encoder.layer.{i}." for i in range(n_layers)]
        attn = [f"bert.encoder.layer.{i}.attention." for i in range(n_layers)]
        if tokenizer is not None:
            special = {"cls": tokenizer.cls_token_id, "sep": tokenizer.sep_token_id, "pad": tokenizer.pad_token_id,
                       "unk": tokenizer.unk_token_id, "mask": tokenizer.mask_token_id}
            vocab = tokenizer.get_vocab()
            unused = sorted(i for t, i in vocab.items() if _UNUSED.match(t))
        else:  # bert-base-uncased's vocab.txt
            special = {"cls": 101, "sep": 102, "pad": cfg.pad_token_id or 0, "unk": 100, "mask": 103}
            unused = list(range(1, 100)) + list(range(104, 999)) if cfg.vocab_size == 30522 else []
        pinned = "[CLS] at 0, [SEP] at the last real position, [PAD] after it"
        hidden = cfg.hidden_size
    else:
        n_layers = cfg.n_layer
        blocks = [f"transformer.h.{i}." for i in range(n_layers)]
        attn = [f"transformer.h.{i}.attn." for i in range(n_layers)]
        eos = tokenizer.eos_token_id if tokenizer is not None else cfg.eos_token_id
        special = {"eos": eos, "pad": cfg.pad_token_id if cfg.pad_token_id is not None else eos}
        unused = []
        pinned = "pad positions only (pad = eos)"
        hidden = cfg.n_embd
    return {
        "family": family,
        "size": getattr(model, "gibench_size", None),
        "pretrained": getattr(model, "gibench_pretrained", None),
        "embedding": emb,
        "embedding_param": emb_name,
        "embedding_used_by_attacker": False,
        "vocab_size": int(emb.weight.shape[0]),
        "hidden_size": int(hidden),
        "n_layers": int(n_layers),
        "block_prefixes": blocks,
        "attention_prefixes": attn,
        "special_ids": special,
        "pinned": pinned,
        "unused_ids": unused,
        "reference_embed_norm": REFERENCE_EMBED_NORM[family],
    }


__all__ = ["BoundTextModel", "pad_batch", "EMBEDDING_PARAM", "PAD_ID", "pretrained_config", "ModelUnavailable", "BERT_BASE", "BERT_DEMO", "GPT2_BASE", "GPT2_DEMO", "HUB_NAMES",
           "REFERENCE_EMBED_NORM", "make_config", "model_class", "load_pretrained", "download_pretrained",
           "hub_model_dir", "load_lm_prior", "text_model_info"]
