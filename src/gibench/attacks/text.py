"""The text attacks' registry entries: adapters around :mod:`.lamp` (LAMP) and :mod:`.dager`
(DAGER), which reconstruct token ids, not images.

Their call convention: ``attack(ctx: TextAttackContext) -> TextAttackOutput``; the attack job of
a text case (:func:`gibench.pipeline.jobs_text.text_attack_job`) builds the context from what
the threat model gives the server (weights, the shared update with encrypted entries zeroed,
the mask, the knowledge file) and the case's tokenizer.  ``families``: the model families an
attack runs on (``ATTACKS.entry(kind).families``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..params import ParamSpec
from . import dager, lamp
from .base import ATTACKS


@dataclass
class TextAttackContext:
    model: torch.nn.Module
    shared: dict[str, torch.Tensor]          # encrypted entries zeroed
    visible: dict[str, torch.Tensor]         # True = plaintext
    knowledge: dict
    tokenizer: Any
    params: dict
    seed: int
    device: torch.device
    hub_dir: str
    progress: Callable[[int, float], None] | None = None


@dataclass
class TextAttackOutput:
    sequences: list[list[int]]               # recovered token ids per sentence (special tokens included)
    texts: list[str]
    status: str                              # ok | nothing_visible | no_recovery
    message: str = ""
    final_loss: float = float("nan")
    trace: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def _need(knowledge: dict, key: str, attack: str, why: str):
    v = knowledge.get(key)
    if v is None:
        raise ValueError(f"{attack}: the knowledge file has no {key!r} ({why}); set "
                         f"threat_model.{'labels_known' if key == 'labels' else 'sequence_lengths_known'}: true")
    return v


def load_prior(spec: Any, hub_dir: str, device: torch.device):
    """LAMP's language-model prior: None for ``none``, else a causal LM (hub name, local
    directory, LAMP's ``.pth`` for the BERT vocabulary, or the ``.safetensors`` artifact of
    rule ``lm_pretrain``: what ``prior: pretrained_local`` resolves to)."""
    if spec in (None, "none", False):
        return None
    if str(spec).endswith(".safetensors"):
        from ..models.pretrain import load_lm  # deferred: only LAMP with a local prior needs it

        return load_lm(spec, device=device)
    from ..models.text import load_lm_prior  # deferred: pulls transformers

    return load_lm_prior(str(spec), hub_dir=hub_dir, device=device)


def run_lamp_attack(ctx: TextAttackContext) -> TextAttackOutput:
    params = dict(ctx.params)
    prior_spec = params.pop("prior", "none")
    labels = _need(ctx.knowledge, "labels", "lamp", "LAMP matches gradients of the known labels")
    lengths = _need(ctx.knowledge, "lengths", "lamp", "LAMP knows each sentence's length")
    prior = load_prior(prior_spec, ctx.hub_dir, ctx.device)
    res = lamp.run_lamp(ctx.model, ctx.shared, ctx.visible, token_len=lengths, labels=labels, tokenizer=ctx.tokenizer,
                        cfg=params, seed=ctx.seed, device=ctx.device, prior=prior, progress=ctx.progress)
    seqs = [res.token_ids[b, :n].tolist() for b, n in enumerate(res.lengths)]
    info = {**res.info, "prior": str(prior_spec)}
    return TextAttackOutput(seqs, res.text, res.status, res.message, float(res.final_loss), res.trace, info)


def run_dager_attack(ctx: TextAttackContext) -> TextAttackOutput:
    family = ctx.knowledge.get("family")
    if family != "gpt2":
        raise ValueError(f"dager: only the GPT-2 (decoder) path is implemented, not {family!r}; "
                         f"restrict studies.<study>.attacks.dager.models to [gpt2]")
    res = dager.run(ctx.model, ctx.shared, ctx.visible, tokenizer=ctx.tokenizer, cfg=ctx.params, seed=ctx.seed,
                    device=ctx.device, progress=ctx.progress, batch_size=int(ctx.knowledge["batch_size"]))
    status = "ok" if res.status == "ok" else "no_recovery"
    trace = [{"iteration": int(r["position"]), **{k: v for k, v in r.items() if k != "position"}}
             for r in (res.trace or [])]
    texts = res.texts if res.texts is not None else [ctx.tokenizer.decode(s) for s in res.sequences]
    return TextAttackOutput([list(s) for s in res.sequences], texts, status, res.message, float(res.final_loss),
                            trace, dict(res.info))


ATTACKS.add("lamp", run_lamp_attack,
            params=ParamSpec("lamp", lamp.SCHEMA, {**lamp.DEFAULTS, "prior": "none"}, lamp.resolve_cfg),
            modality="text", families=("bert", "gpt2"), display="LAMP", studies=("selective_encryption",),
            needs=("lm_prior",),
            description="LAMP (Balunović et al. 2022): embedding optimisation + LM-guided reordering")
ATTACKS.add("dager", run_dager_attack, params=ParamSpec("dager", dager.SCHEMA, dager.DEFAULTS, dager.resolve_cfg),
            modality="text", families=("gpt2",), display="DAGER", studies=("selective_encryption",),
            description="DAGER (Petrov et al. 2024): exact recovery from attention-gradient spans")

__all__ = ["TextAttackContext", "TextAttackOutput", "load_prior", "run_lamp_attack", "run_dager_attack"]
