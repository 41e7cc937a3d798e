"""Small language models trained here, offline: the ``pretrained_local`` text models (issue 25).

Pretrained BERT/GPT-2 checkpoints cannot be downloaded on an offline machine, and a text
model with random weights knows no language: LAMP then has no prior and the attacked model
none of the structure the paper's pretrained checkpoints have.  This module trains the
reduced GPT-2 (the real BPE vocabulary and tokenizer) as a **causal language model** on the
bundled corpora's *training* text, so that the pipeline can

* attack its trunk with a fresh, seeded two-class head (``models.<m>.weights:
  pretrained_local``; as the paper attacks the not-fine-tuned hub checkpoints), and
* use the language model itself as LAMP's prior (``prior: pretrained_local``; the GPT-2
  port of LAMP uses GPT-2 itself).

**Held-out text, exact.**  Every sentence an attack may use as a victim (the victim pool of
every configured text dataset) and every sentence the held-out perplexity is measured on is
removed from the training text, together with every training text that *overlaps* one of
them: a training text is dropped when its :func:`text_key` contains the key of a held-out
sentence, or is contained in one.  The key keeps only the letters and digits, lower-cased
(NFKC), so tokenisation conventions do not hide a match: SST-2's ``century 's`` and
``is n't`` are Rotten Tomatoes' ``century's`` and ``isn't`` (SST-2 was built from the same
reviews), and SST-2's training phrases that are parts of a held-out sentence go too.  The
check is a plain substring search over the joined keys (exact, no hashing or sampling);
:func:`overlapping` is tested on the real bundled corpora.

**Training** (:func:`train_lm`): sentences as separate sequences from position 0
with no BOS token, as LAMP's prior scores them (``gibench.attacks.lamp.lm_loss``: each
token predicted from the ones before it, the first one not scored), truncated to
``max_length`` tokens; random batches of ``batch_size`` sentences (a seeded permutation per
epoch), right-padded, the loss over the real next tokens only (the output layer is the
transposed word-embedding matrix, tied as in GPT-2, and is evaluated at those positions
only); AdamW (betas 0.9/0.95, weight decay on matrices only), linear warm-up then cosine
decay to ``min_lr_ratio``, gradient clipping at 1; dropout off.  Seeded: the same seed,
settings and thread count give the same bytes.

**Perplexity** (:func:`perplexity`): exp of the mean next-token cross-entropy over
all predicted tokens of a set of sentences, under the same convention; recorded for the
random initialisation and the trained model, on the held-out split sample and on the
victims.

**BERT** (``lm_pretrain.bert``): the reduced BERT with the real uncased vocabulary as a
**masked** language model (BERT's recipe: 15 % of the non-special tokens of each sentence
chosen, at least one; of those 80 % become ``[MASK]``, 10 % a random token, 10 % stay; the
loss over the chosen tokens; ``[CLS] ... [SEP]`` around each sentence; no next-sentence
task, so BERT's pooler is not trained and stays the classifier's seeded initialisation).
Its perplexity is the masked-token perplexity exp(mean cross-entropy of the chosen tokens)
under one fixed seeded choice, the same for the random and the trained model.  A masked LM
is not a causal LM, so it cannot be LAMP's prior (LAMP's BERT prior is a causal LM over the
BERT vocabulary, GBDA's).
"""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import io
from ..datasets import DATASETS
from ..schema import load_schema
from .text import make_config

#: objective per text family (the family fixes the vocabulary and the tokenizer)
OBJECTIVES = {"gpt2": "causal", "bert": "mlm"}
#: the prefix of the trunk's parameter names (what a classifier takes over)
TRUNK_PREFIX = {"gpt2": "transformer.", "bert": "bert."}

def defaults() -> dict[str, Any]:
    """The defaults of ``lm_pretrain.<family>``, read from the config schema
    (``$defs.lm_pretrain`` in config/schema/config.schema.yaml: one place for them)."""
    props = load_schema()["$defs"]["lm_pretrain"]["properties"]
    return {k: v["default"] for k, v in props.items() if "default" in v}


def settings(spec: dict | None) -> dict:
    """``spec`` over the schema's defaults; unknown keys are an error."""
    spec = dict(spec or {})
    base = defaults()
    unknown = set(spec) - set(base)
    if unknown:
        raise ValueError(f"lm_pretrain: unknown setting(s) {sorted(unknown)}; known: {sorted(base)}")
    return {**base, **spec}


# --------------------------------------------------------------------------- held-out text

_PTB_BRACKETS = ("-lrb-", "-rrb-", "-lsb-", "-rsb-", "-lcb-", "-rcb-")


def text_key(text: str) -> str:
    """The comparison key of a sentence: NFKC, lower case, PTB bracket tokens removed, then
    only the letters and digits kept (no spaces), so ``"century 's"`` and ``"century's"``,
    ``"is n't"`` and ``"isn't"``, ``"`` `` ``"`` and ``'"'`` compare equal."""
    s = unicodedata.normalize("NFKC", text).lower()
    for b in _PTB_BRACKETS:
        s = s.replace(b, " ")
    return "".join(ch for ch in s if ch.isalnum())


_SEP = "\x00"


def overlapping(texts: Sequence[str], heldout: Iterable[str]) -> np.ndarray:
    """Boolean mask over ``texts``: True where a text overlaps a held-out sentence, i.e. its
    :func:`text_key` contains the key of a held-out sentence or is contained in one (an
    empty key - punctuation only - counts as contained).  Exact substring search."""
    hkeys = sorted({k for k in (text_key(h) for h in heldout) if k})
    keys = [text_key(t) for t in texts]
    out = np.zeros(len(keys), dtype=bool)
    if not hkeys:
        return out
    # (1) the text is (part of) a held-out sentence
    hay = _SEP + _SEP.join(hkeys) + _SEP
    for i, k in enumerate(keys):
        if not k or k in hay:
            out[i] = True
    # (2) a held-out sentence is part of the text: find every occurrence in the joined keys
    starts = np.zeros(len(keys), dtype=np.int64)
    pos = 0
    for i, k in enumerate(keys):
        starts[i] = pos
        pos += len(k) + 1
    joined = _SEP.join(keys)
    for h in hkeys:
        j = joined.find(h)
        while j >= 0:
            out[int(np.searchsorted(starts, j, side="right")) - 1] = True
            j = joined.find(h, j + 1)
    return out


# --------------------------------------------------------------------------- corpora

@dataclass
class Corpus:
    """The training text of a local language model, after the held-out filter."""
    texts: list[str]
    parts: list[dict] = field(default_factory=list)   # per corpus: dataset, split, source, sentences, kept, dropped


def read_corpus(specs: Sequence[dict], resources_dir: str | Path, hub_dir: str | Path | None,
                heldout: Iterable[str]) -> Corpus:
    """The texts of every corpus spec (``{dataset, split, source}``), minus the texts that
    overlap ``heldout`` (:func:`overlapping`), in spec order then file order."""
    held = list(heldout)
    texts: list[str] = []
    parts = []
    for spec in specs:
        ds = DATASETS.get(spec["dataset"])
        split = ds.load(spec.get("source", "bundled"), spec["split"], resources_dir, hub_dir)
        drop = overlapping(split.texts, held)
        kept = [t for t, d in zip(split.texts, drop) if not d]
        parts.append({"dataset": spec["dataset"], "split": spec["split"], "source": split.source,
                      "sentences": len(split.texts), "kept": len(kept), "dropped_overlap": int(drop.sum())})
        texts += kept
    return Corpus(texts, parts)


def heldout_sample(specs: Sequence[dict], resources_dir: str | Path, hub_dir: str | Path | None, n: int,
                   seed: int) -> tuple[list[str], list[dict], list[str]]:
    """(sample for the perplexity, per-split info, every sentence of the held-out splits):
    ``n`` sentences of each held-out split (a seeded permutation's prefix; all if fewer)."""
    sample, info, every = [], [], []
    for k, spec in enumerate(specs):
        ds = DATASETS.get(spec["dataset"])
        split = ds.load(spec.get("source", "bundled"), spec["split"], resources_dir, hub_dir)
        every += split.texts
        perm = np.random.default_rng([int(seed), k]).permutation(len(split.texts))[:n]
        chosen = [split.texts[int(i)] for i in perm]
        sample += chosen
        info.append({"dataset": spec["dataset"], "split": spec["split"], "source": split.source,
                     "sentences": len(split.texts), "sampled": len(chosen)})
    return sample, info, every


def encode(tokenizer, texts: Sequence[str], max_length: int, min_tokens: int = 2) -> list[list[int]]:
    """Token ids of each text as the model sees it (GPT-2: no special tokens; BERT:
    ``[CLS] ... [SEP]``), truncated to ``max_length`` (BERT keeps its ``[SEP]``); texts with
    fewer than ``min_tokens`` tokens (nothing to predict) are left out."""
    out = []
    for t in texts:
        ids = tokenizer(t, truncation=True, max_length=max_length)["input_ids"]
        if len(ids) >= min_tokens:
            out.append(list(ids))
    return out


# --------------------------------------------------------------------------- models

def lm_config(family: str, size: str = "demo", config_overrides: dict | None = None):
    """The transformers config of the local language model: the family's ``size`` with the
    overrides, dropout off (``attn_implementation`` eager, as the attacked models)."""
    if family not in OBJECTIVES:
        raise ValueError(f"lm_pretrain: no local language model for {family!r} (available: {sorted(OBJECTIVES)})")
    off = ({"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0} if family == "gpt2"
           else {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    cfg = make_config(family, size, 2, "eager", {**off, **(config_overrides or {})})
    return cfg


def build_lm(cfg, seed: int) -> nn.Module:
    """GPT2LMHeadModel (GPT-2) or BertForMaskedLM (BERT), output layer tied to the word
    embeddings, with weights drawn under ``seed``."""
    import transformers as tr

    cls = tr.GPT2LMHeadModel if cfg.model_type == "gpt2" else tr.BertForMaskedLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = cls(cfg)
    model.tie_weights()
    return model


def _batch(seqs: Sequence[Sequence[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), int(pad), dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids.to(device), mask.to(device)


def next_token_nll(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(sum of the next-token cross-entropies, number of predicted tokens) of a right-padded
    batch: position t predicts token t+1 wherever both are real tokens.  The logits are
    computed at those positions only (hidden state @ word embeddings, GPT-2's tied head)."""
    h = model.transformer(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    valid = (mask[:, 1:] * mask[:, :-1]).bool()
    hv = h[:, :-1][valid]
    target = ids[:, 1:][valid]
    logits = model.lm_head(hv)
    return F.cross_entropy(logits.float(), target, reduction="sum"), int(target.numel())


#: BERT's special ids (bert-base-uncased vocab.txt): [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103
BERT_SPECIAL = (0, 100, 101, 102, 103)
BERT_MASK = 103


def mlm_choice(ids: torch.Tensor, mask: torch.Tensor, gen: torch.Generator, rate: float = 0.15,
               vocab: int = 30522) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of a right-padded batch: (corrupted ids, chosen positions).  Each
    non-special token is chosen with probability ``rate`` (the first candidate of a sentence
    when none is); chosen tokens become [MASK] (80 %), a random token (10 %) or stay (10 %).
    Draws from ``gen`` (CPU) in a fixed order: the same generator state gives the same choice."""
    cand = mask.bool().clone()
    for s in BERT_SPECIAL:
        cand &= ids != s
    u = torch.rand(ids.shape, generator=gen).to(ids.device)
    chosen = cand & (u < rate)
    none = ~chosen.any(1) & cand.any(1)
    if none.any():
        first = cand.float().argmax(1)
        chosen[none, first[none]] = True
    kind = torch.rand(ids.shape, generator=gen).to(ids.device)
    rand_tok = torch.randint(0, vocab, ids.shape, generator=gen).to(ids.device)
    out = ids.clone()
    out[chosen & (kind < 0.8)] = BERT_MASK
    swap = chosen & (kind >= 0.8) & (kind < 0.9)
    out[swap] = rand_tok[swap]
    return out, chosen


def masked_nll(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, gen: torch.Generator
               ) -> tuple[torch.Tensor, int]:
    """(sum of the cross-entropies of the chosen tokens, their number) of BERT's MLM loss; the
    prediction head is evaluated at the chosen positions only."""
    corrupted, chosen = mlm_choice(ids, mask, gen, vocab=model.config.vocab_size)
    h = model.bert(input_ids=corrupted, attention_mask=mask).last_hidden_state
    logits = model.cls(h[chosen])
    target = ids[chosen]
    return F.cross_entropy(logits.float(), target, reduction="sum"), int(target.numel())


def objective_nll(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, gen: torch.Generator):
    """The training objective of ``model``'s family: next-token (GPT-2) or masked-token (BERT)."""
    if getattr(model.config, "model_type", "") == "bert":
        return masked_nll(model, ids, mask, gen)
    return next_token_nll(model, ids, mask)


@torch.no_grad()
def perplexity(model: nn.Module, seqs: Sequence[Sequence[int]], pad: int, batch_size: int = 64,
               device: torch.device | str = "cpu", seed: int = 0) -> dict:
    """Perplexity of ``seqs`` under the model's objective: exp(total NLL / predicted tokens);
    for BERT the masked-token perplexity under a choice drawn from ``seed`` (the same choice
    for every model evaluated with the same seed)."""
    was = model.training
    model.eval()
    gen = torch.Generator().manual_seed(int(seed))
    total, n = 0.0, 0
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))   # little padding; sums are order-free
    for s in range(0, len(order), batch_size):
        ids, mask = _batch([seqs[i] for i in order[s:s + batch_size]], pad, device)
        nll, k = objective_nll(model, ids, mask, gen)
        total += float(nll)
        n += k
    model.train(was)
    return {"perplexity": math.exp(total / n) if n else float("nan"), "nll_per_token": total / n if n else float("nan"),
            "tokens": n, "sentences": len(seqs)}


def lr_at(step: int, steps: int, lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``lr`` to ``lr * min_ratio``."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    span = max(1, steps - warmup)
    t = min(1.0, (step - warmup) / span)
    return lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t)))


def train_lm(model: nn.Module, seqs: Sequence[Sequence[int]], *, steps: int, batch_size: int, lr: float,
             warmup: int, min_lr_ratio: float, weight_decay: float, seed: int, pad: int,
             device: torch.device | str = "cpu", log_every: int = 50,
             progress: Callable[[int, float], None] | None = None) -> list[dict]:
    """Train ``model`` in place on its family's objective (see the module docstring); returns
    the training trace (step, mean training loss per predicted token since the last row,
    learning rate, predicted tokens, epochs)."""
    if not seqs:
        raise ValueError("lm_pretrain: the training text is empty (every sentence was held out?)")
    model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95), eps=1e-8)
    rng = np.random.default_rng(int(seed))
    gen = torch.Generator().manual_seed(int(seed))          # BERT's masking draws
    order = rng.permutation(len(seqs))
    cursor = 0
    trace = []
    acc_nll, acc_n = 0.0, 0
    for step in range(int(steps)):
        if cursor + batch_size > len(order):
            order = rng.permutation(len(seqs))
            cursor = 0
        idx = order[cursor:cursor + batch_size]
        cursor += batch_size
        ids, mask = _batch([seqs[int(i)] for i in idx], pad, device)
        cur = lr_at(step, steps, lr, warmup, min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = cur
        nll, n = objective_nll(model, ids, mask, gen)
        loss = nll / max(n, 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        acc_nll += float(nll.detach())
        acc_n += n
        if (step + 1) % log_every == 0 or step + 1 == steps:
            trace.append({"step": step + 1, "train_loss": acc_nll / max(acc_n, 1), "lr": cur, "tokens": acc_n,
                          "epoch": (step + 1) * batch_size / len(seqs)})
            if progress is not None:
                progress(step + 1, acc_nll / max(acc_n, 1))
            acc_nll, acc_n = 0.0, 0
    model.eval()
    return trace


# --------------------------------------------------------------------------- artifacts

def lm_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What the artifact stores: GPT-2's trunk (``transformer.*``; the output layer is the
    tied word-embedding matrix), or BERT's trunk and MLM head without the tied decoder matrix."""
    if getattr(model.config, "model_type", "") == "bert":
        tied = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")   # = word embeddings, cls bias
        return {k: v for k, v in model.state_dict().items() if k not in tied}
    return {k: v for k, v in model.state_dict().items() if k.startswith("transformer.")}


def load_lm(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """The language model of an ``lm_pretrain`` artifact, as a GPT2LMHeadModel in eval mode
    (the architecture from the artifact's record)."""
    import transformers as tr

    state, rec = io.load_tensors(path)
    lm = rec.get("lm") or {}
    if "config" not in lm:
        raise io.ArtifactError(f"{path}: not an lm_pretrain artifact (no lm.config in its record)")
    if lm.get("objective") != "causal":
        raise io.ArtifactError(f"{path}: a {lm.get('objective')} language model ({lm.get('family')}), not a "
                               f"causal one; LAMP's prior must be causal")
    cfg = tr.GPT2Config(**lm["config"])
    cfg._attn_implementation = "eager"
    model = tr.GPT2LMHeadModel(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight" and not k.endswith(("attn.bias", "masked_bias"))]
    if missing or unexpected:
        raise io.ArtifactError(f"{path}: keys do not match the recorded architecture "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.tie_weights()
    model.gibench_lm = {k: lm.get(k) for k in ("family", "perplexity", "steps")}
    return model.eval().to(device)


#: architecture fields that must agree between the language model and the attacked model
ARCH_KEYS = {"gpt2": ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "activation_function",
                      "layer_norm_epsilon"),
             "bert": ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                      "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps")}


def load_trunk(net: nn.Module, path: str | Path) -> dict:
    """Copy the trunk of the language model at ``path`` into the classifier ``net`` (its
    ``transformer.*`` / ``bert.*`` tensors; the classification head - and BERT's pooler, which
    masked-LM training does not train - keep their seeded initialisation).  The
    architectures must agree; returns the language model's record facts."""
    state, rec = io.load_tensors(path)
    lm = rec.get("lm") or {}
    family = getattr(net, "gibench_family", None)
    cfg = net.config.to_dict()
    diff = {k: (cfg.get(k), lm.get("config", {}).get(k)) for k in ARCH_KEYS.get(family, ())
            if cfg.get(k) != lm.get("config", {}).get(k)}
    if family != lm.get("family") or diff:
        raise io.ArtifactError(f"{path}: the language model ({lm.get('family')}) does not match the {family} model "
                               f"to initialise (differences, model vs LM: {diff}); give the model the "
                               f"architecture of lm_pretrain.{family}")
    own = dict(net.named_parameters())
    trunk = {k: v for k, v in state.items() if k in own}
    missing = [k for k in own if k.startswith(TRUNK_PREFIX[family]) and k not in trunk and ".pooler." not in k]
    if missing:
        raise io.ArtifactError(f"{path}: lacks trunk tensors {missing[:3]}")
    with torch.no_grad():
        for k, v in trunk.items():
            own[k].copy_(v.to(own[k].dtype))
    return {"lm_path": str(path), "tensors_loaded": len(trunk), "kept_initialisation": sorted(set(own) - set(trunk)),
            "perplexity": lm.get("perplexity")}


__all__ = ["OBJECTIVES", "TRUNK_PREFIX", "defaults", "settings", "text_key", "overlapping", "Corpus", "read_corpus",
           "heldout_sample", "encode", "lm_config", "build_lm", "next_token_nll", "mlm_choice", "masked_nll",
           "objective_nll", "perplexity", "lr_at", "train_lm", "lm_state", "load_lm",
           "load_trunk", "ARCH_KEYS"]
