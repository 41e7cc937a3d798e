"""LAMP (Balunović et al., NeurIPS 2022): text reconstruction from gradients with a
language-model prior, for BERT (official code, eth-sri/lamp) and GPT-2 (the port in the
DAGER repository), with encrypted gradient entries removed from the objective.

Algorithm (facts from the reference code, re-implemented):

1. **Threat model.** The attacker has the model and its weights, the shared gradient of
   every parameter (in ``model.eval()`` mode, mean cross-entropy over the batch), the
   labels and the sequence lengths.  It optimises the *input embeddings*
   ``x`` (B x T x d), fed as ``inputs_embeds``; so the dummy gradient of the word-embedding
   matrix does not exist (None) and that tensor never enters the objective, whatever is
   encrypted.  Position / token-type embedding gradients do enter it.
2. **Pinned positions.** BERT: ``[CLS]`` at 0, ``[SEP]`` at the last real position,
   ``[PAD]`` after it; GPT-2: pad positions only (pad = eos).  Pinned positions hold the
   true special-token embeddings throughout (the reference re-pins after every step).
3. **Initialisation** (``init_candidates`` = 500): draw N(0, 1) candidates, keep the one
   with the lowest reconstruction loss, then try ``init_permutations`` (500) random
   permutations of the free positions keeping improvements, then rescale every token
   vector to norm ``init_size``.
4. **Continuous phase.** Adam (lr 0.01), StepLR(step 50, gamma ``lr_decay`` 0.89) for
   ``n_steps`` (2000) on ``rec_loss(x) + coeff_reg * (mean_i ‖x_i‖ − init_size)²`` (mean
   over all B x T positions).  ``rec_loss`` is ``cos`` (LAMP_Cos: 1 − cosine per tensor,
   averaged over tensors), ``tag`` (LAMP_L1+L2: Σ ‖Δ‖² + tag_factor·‖Δ‖₁) or ``l2``
   (DLG).  The dummy gradient is built with ``create_graph=True`` (double backward).  The
   iterate with the lowest total loss is kept.
5. **Discrete phase** every ``swap_every`` (75) steps after ``swap_burnin`` (10 %) of the
   run (``it >= burnin·n_steps and it % swap_every == 1``): per sentence,
   ``swap_candidates`` (200) reorderings of the free positions - the identity plus moves
   cycling through *swap two tokens*, *move one token*, *move a span*, *move a prefix to the
   end* (the last three only for more than two free positions) - scored by
   ``rec_loss(permuted x) + coeff_perplexity · LM_loss(permuted nearest tokens)``; the best
   replaces x (gibench also permutes Adam's moment estimates with it).
6. **Projection.** Each free position becomes the vocabulary token with the highest
   cosine similarity (BERT's ``[unusedN]`` tokens excluded).

Variants (``variant``; explicit keys override): ``cos`` = LAMP_Cos (coeff_perplexity 0.2,
coeff_reg 1.0) and ``l1l2`` = LAMP_L1+L2 (loss ``tag``, tag_factor 0.01,
coeff_perplexity 60, coeff_reg 25), as in the reference scripts.

**LM prior.** ``prior`` is a causal LM object (``prior(input_ids=...)`` gives ``.logits``)
over the model's vocabulary: GPT-2 itself for GPT-2 (the port's choice), the
BERT-vocabulary GPT-2 LM of GBDA for BERT (``gibench.models.text.load_lm_prior``).  With
``prior=None`` (the demo: no pretrained weights offline) the discrete step is scored by
``rec_loss`` alone.

**Encrypted entries** (``visible[name]``: True = plaintext; None or absent = fully
visible) are removed from the objective on both sides: the cosine of a tensor is taken
over its visible entries, with both norms over visible entries only; L1/L2 sum over
visible entries; a tensor with no visible entry drops out of the sum and out of the
tensor count.  For ``cos`` a tensor whose visible true gradient is exactly zero carries
no direction and is left out as well (counted in ``info['zero_tensors']``).  When no
tensor LAMP uses has a visible entry the attack returns ``status='nothing_visible'`` and
a seeded uniform guess over the allowed vocabulary.

**init_size** (``auto``): the reference constants - 1.4 (BERT) and 3.98 (GPT-2), the mean
word-embedding norms of the pretrained checkpoints - when the model was loaded with
``pretrained``; otherwise the *measured* mean row norm of the model's own word-embedding
table (random-weight models, e.g. the demo, have N(0, 0.02²) rows: ≈0.02·√d), because the
regulariser is meant to keep x at the scale of real embeddings.  A number overrides.

Cost: about (1 + 1/3 · swap share) double-backward passes per step; see
``benchmarks/bench_lamp.py``.  ``time_limit`` (seconds) stops the run early (the
best iterate so far is projected; ``info['stopped'] = 'time_limit'``).

Length: one attack, ported from the reference code's single loop (the masked gradient
distance, token projection, the LM prior, the discrete swap rounds) and read best in that order;
its helpers serve only this loop.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: Paper-scale defaults (lamp_cos.sh / the GPT-2 port's scripts).
DEFAULTS: dict[str, Any] = {
    "variant": "cos",            # cos (LAMP_Cos) | l1l2 (LAMP_L1+L2)
    "loss": None,                # from the variant: cos | tag | l2
    "tag_factor": 0.01,          # weight of the L1 term of `tag`
    "coeff_perplexity": None,    # from the variant: 0.2 (cos) / 60 (l1l2)
    "coeff_reg": None,           # from the variant: 1.0 (cos) / 25 (l1l2)
    "lr": 0.01,                  # Adam
    "lr_decay": 0.89,            # StepLR gamma
    "lr_step": 50,               # StepLR step size
    "n_steps": 2000,
    "init_candidates": 500,      # random N(0,1) candidates, best rec_loss kept
    "init_permutations": 500,    # random reorderings tried after that
    "init_size": "auto",         # float | auto (see module docstring)
    "swap_every": 75,
    "swap_burnin": 0.1,
    "swap_candidates": 200,      # incl. the identity
    "time_limit": None,          # seconds, or None
    "model_mode": "eval",        # the reference computes gradients in eval mode
    "exclude_unused": True,      # BERT [unusedN] tokens never chosen in the projection
    "trace_every": 10,           # trace row every k steps (and at every swap round)
    "eval_chunk": 16,            # at most this many candidates evaluated together (torch.func.vmap); 1 = a loop
    "eval_memory_mb": 2048,      # ... and fewer when their per-candidate gradients would exceed this budget
}

VARIANTS: dict[str, dict[str, Any]] = {
    "cos": {"loss": "cos", "coeff_perplexity": 0.2, "coeff_reg": 1.0},
    "l1l2": {"loss": "tag", "coeff_perplexity": 60.0, "coeff_reg": 25.0},
}
LOSSES = ("cos", "tag", "l2")


@dataclass
class LampResult:
    token_ids: torch.Tensor            # B x T int64 (pinned positions hold their special tokens)
    text: list[str]                    # decoded, special tokens removed
    trace: list[dict] = field(default_factory=list)
    final_loss: float = float("nan")   # rec_loss of the projected tokens (the attacker's own check)
    status: str = "ok"                 # ok | nothing_visible
    message: str = ""
    info: dict = field(default_factory=dict)
    labels: torch.Tensor | None = None
    lengths: list[int] = field(default_factory=list)


def resolve_cfg(cfg: dict | None) -> dict:
    """Defaults < variant preset < explicit keys; unknown keys are an error."""
    cfg = dict(cfg or {})
    cfg.pop("prior", None)  # the prior spec is loaded by the caller (pipeline key)
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"lamp: unknown option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    variant = cfg.get("variant", DEFAULTS["variant"])
    if variant not in VARIANTS:
        raise ValueError(f"lamp: variant must be one of {sorted(VARIANTS)}, not {variant!r}")
    out = dict(DEFAULTS)
    out.update(VARIANTS[variant])
    out.update({k: v for k, v in cfg.items() if v is not None or k == "time_limit"})
    if out["loss"] not in LOSSES:
        raise ValueError(f"lamp: loss must be one of {LOSSES}, not {out['loss']!r}")
    for k in ("n_steps", "init_candidates", "init_permutations", "swap_every", "swap_candidates", "lr_step",
              "trace_every", "eval_chunk", "eval_memory_mb"):
        out[k] = int(out[k])
        if out[k] < (0 if k in ("n_steps", "init_permutations") else 1):
            raise ValueError(f"lamp: {k} must be positive, got {out[k]}")
    return out


def _nonneg(t: str = "number") -> dict:
    return {"type": t, "minimum": 0}


#: JSON schema of each option (gibench.params: checked when the DAG is built); ``prior`` is the
#: pipeline's key for the language-model prior (loaded by the caller, see jobs_text)
SCHEMA: dict[str, dict] = {
    "variant": {"enum": sorted(VARIANTS)},
    "loss": {"enum": [*LOSSES, None]},
    "tag_factor": _nonneg(),
    "coeff_perplexity": {"type": ["number", "null"], "minimum": 0},
    "coeff_reg": {"type": ["number", "null"], "minimum": 0},
    "lr": {"type": "number", "exclusiveMinimum": 0},
    "lr_decay": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "lr_step": {"type": "integer", "minimum": 1},
    "n_steps": _nonneg("integer"),
    "init_candidates": {"type": "integer", "minimum": 1},
    "init_permutations": _nonneg("integer"),
    "init_size": {"anyOf": [{"enum": ["auto"]}, {"type": "number", "exclusiveMinimum": 0}]},
    "swap_every": {"type": "integer", "minimum": 1},
    "swap_burnin": {"type": "number", "minimum": 0, "maximum": 1},
    "swap_candidates": {"type": "integer", "minimum": 1},
    "time_limit": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "model_mode": {"enum": ["eval", "train"]},
    "exclude_unused": {"type": "boolean"},
    "trace_every": {"type": "integer", "minimum": 1},
    "eval_chunk": {"type": "integer", "minimum": 1},
    "eval_memory_mb": {"type": "integer", "minimum": 1},
    "prior": {"type": ["string", "null"]},
}


# --------------------------------------------------------------------------- objective

class MaskedGradDistance:
    """``rec_loss`` over the visible entries of the tensors LAMP can compare.

    ``names``/``params``: the parameters whose dummy gradient is taken, in model order.
    Built once per attack: targets are masked and their norms cached."""

    def __init__(self, model: nn.Module, shared: dict[str, torch.Tensor],
                 visible: dict[str, torch.Tensor | None] | None, loss: str, tag_factor: float,
                 skip: set[str], device: torch.device):
        self.loss, self.tag_factor = loss, float(tag_factor)
        self.names: list[str] = []
        self.params: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.masks: list[torch.Tensor | None] = []
        self.tnorms: list[torch.Tensor | None] = []
        self.dropped_encrypted: list[str] = []
        self.zero_tensors: list[str] = []
        self.n_visible = 0
        self.n_total = 0
        visible = visible or {}
        for name, p in model.named_parameters():
            if name in skip or name not in shared or not p.requires_grad:
                continue
            g = shared[name].to(device=device, dtype=p.dtype).reshape(p.shape)
            v = visible.get(name)
            self.n_total += g.numel()
            if v is not None:
                v = v.to(device=device, dtype=torch.bool).reshape(p.shape)
                if bool(v.all()):
                    v = None
                elif not bool(v.any()):
                    self.dropped_encrypted.append(name)
                    continue
            vf = None if v is None else v.to(g.dtype)
            gt = g if vf is None else g * vf
            self.n_visible += g.numel() if v is None else int(v.sum())
            tn = None
            if loss == "cos":
                tn = gt.norm()
                if float(tn) == 0.0:
                    self.zero_tensors.append(name)
                    continue
            self.names.append(name)
            self.params.append(p)
            self.targets.append(gt.detach())
            self.masks.append(vf)
            self.tnorms.append(tn)

    def __len__(self) -> int:
        return len(self.names)

    def __call__(self, dummy: Sequence[torch.Tensor | None]) -> torch.Tensor:
        total = None
        count = 0
        for g, t, m, tn in zip(dummy, self.targets, self.masks, self.tnorms):
            if g is None:
                if self.loss == "cos":
                    continue  # no dummy direction: the tensor does not depend on the input
                g = torch.zeros_like(t)
            gm = g if m is None else g * m
            if self.loss == "cos":
                term = 1.0 - (gm * t).sum() / (gm.norm() * tn).clamp_min(1e-12)
                count += 1
            else:
                d = gm - t
                term = d.pow(2).sum()
                if self.loss == "tag":
                    term = term + self.tag_factor * d.abs().sum()
            total = term if total is None else total + term
        if total is None:
            return torch.zeros((), device=self.targets[0].device if self.targets else "cpu")
        return total / count if self.loss == "cos" else total


def _logits(model: nn.Module, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    out = model(inputs_embeds=x, attention_mask=attn)
    return out if isinstance(out, torch.Tensor) else out.logits


# --------------------------------------------------------------------------- helpers

def _pinning(family: str, special: dict, lengths: list[int], T: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    B = len(lengths)
    ids = torch.zeros(B, T, dtype=torch.long)
    pin = torch.zeros(B, T, dtype=torch.bool)
    for b, n in enumerate(lengths):
        if family == "bert":
            ids[b, 0], pin[b, 0] = special["cls"], True
            ids[b, n - 1], pin[b, n - 1] = special["sep"], True
        ids[b, n:], pin[b, n:] = special["pad"], True
    return ids.to(device), pin.to(device)


def _allowed_vocab(info: dict, V: int, exclude_unused: bool, device) -> torch.Tensor:
    allowed = torch.ones(V, dtype=torch.bool)
    if exclude_unused and info["unused_ids"]:
        allowed[torch.as_tensor(info["unused_ids"], dtype=torch.long)] = False
    return allowed.to(device)


def project_to_tokens(x: torch.Tensor, E: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Nearest allowed vocabulary token of every position by cosine similarity."""
    En = F.normalize(E, dim=-1)
    sims = F.normalize(x.reshape(-1, x.shape[-1]), dim=-1) @ En.T
    sims[:, ~allowed] = -float("inf")
    return sims.argmax(-1).reshape(x.shape[:-1])


def lm_loss(prior: nn.Module, ids: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """Causal-LM cross-entropy (log-perplexity) of each row of ``ids`` over its first
    ``lengths[b]`` tokens; shape (B,)."""
    out = prior(input_ids=ids)
    logits = out if isinstance(out, torch.Tensor) else out.logits
    T = ids.shape[1]
    pos = torch.arange(1, T, device=ids.device)
    L = torch.as_tensor(list(lengths), device=ids.device)
    valid = (pos[None, :] < L[:, None]).to(logits.dtype)
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), ids[:, 1:], reduction="none")
    return (ce * valid).sum(1) / valid.sum(1).clamp_min(1.0)


def _moves(n: int, K: int, rng: np.random.Generator) -> list[np.ndarray]:
    """K orderings of n free positions: the identity, then the four move types in turn."""
    ident = np.arange(n)
    out = [ident]
    for c in range(1, K):
        kind = (c - 1) % 4 if n > 2 else 0
        p = list(ident)
        if kind == 0:                                    # swap two tokens
            i, j = rng.choice(n, size=2, replace=False)
            p[i], p[j] = p[j], p[i]
        elif kind == 1:                                  # move one token
            i = int(rng.integers(n))
            tok = p.pop(i)
            j = int(rng.integers(n - 1))
            j = j + 1 if j >= i else j
            p.insert(j, tok)
        elif kind == 2:                                  # move a contiguous span
            i = int(rng.integers(n - 1))
            j = int(rng.integers(i + 1, n))              # span p[i:j+1], shorter than n
            if j - i + 1 >= n:
                j -= 1
            span = p[i:j + 1]
            rest = p[:i] + p[j + 1:]
            k = int(rng.integers(len(rest) + 1))
            if k == i:
                k = (k + 1) % (len(rest) + 1)
            p = rest[:k] + span + rest[k:]
        else:                                            # move a prefix to the end
            k = int(rng.integers(1, n))
            p = p[k:] + p[:k]
        out.append(np.asarray(p))
    return out


class _Evaluator:
    """rec_loss of many candidate embeddings (no graph): a loop, or torch.func.vmap in chunks."""

    def __init__(self, model, dist: MaskedGradDistance, attn, labels, chunk: int):
        self.model, self.dist, self.attn, self.labels = model, dist, attn, labels
        self.chunk = chunk
        self.vmap_ok = chunk > 1
        self.n_evals = 0

    def grads(self, x: torch.Tensor, create_graph: bool):
        loss = F.cross_entropy(_logits(self.model, x, self.attn), self.labels)
        return torch.autograd.grad(loss, self.dist.params, create_graph=create_graph, allow_unused=True)

    def one(self, x: torch.Tensor) -> float:
        self.n_evals += 1
        with torch.enable_grad():
            x = x.detach()
            return float(self.dist(self.grads(x, False)))

    def many(self, xs: torch.Tensor) -> torch.Tensor:
        """xs: K x B x T x d -> K losses."""
        out = []
        for s in range(0, xs.shape[0], self.chunk):
            part = xs[s:s + self.chunk]
            if self.vmap_ok and part.shape[0] > 1:
                try:
                    out.append(self._vmapped(part))
                    continue
                except Exception:  # a model the functional transforms cannot trace: fall back
                    self.vmap_ok = False
            out.append(torch.tensor([self.one(x) for x in part]))
        return torch.cat(out)

    def _vmapped(self, part: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call, grad, vmap

        names = self.dist.names
        used = {n: p.detach() for n, p in zip(names, self.dist.params)}
        model, attn, labels, dist = self.model, self.attn, self.labels, self.dist

        def loss_of(pu, x):
            logits = functional_call(model, pu, args=(), kwargs={"inputs_embeds": x, "attention_mask": attn},
                                     strict=False)
            logits = logits if isinstance(logits, torch.Tensor) else logits.logits
            return F.cross_entropy(logits, labels)

        def rec_of(x):
            gs = grad(loss_of)(used, x)
            return dist([gs[n] for n in names])

        with torch.no_grad():
            res = vmap(rec_of)(part.detach())
        self.n_evals += part.shape[0]
        return res.detach().cpu()


def eval_chunk_for(dist: MaskedGradDistance, max_chunk: int, memory_mb: float) -> int:
    """Candidates per vmapped evaluation: each materialises its own dummy gradient of every
    compared tensor (plus about as much again in intermediate gradients), so the chunk is
    ``memory_mb / (3 · gradient bytes)``, between 1 and ``max_chunk``.  (Full-size GPT-2: 85 M
    compared entries, 340 MB a candidate: a 2 GiB budget gives chunks of 2; the demo's 0.5 M:
    the full 16.)"""
    per = 3 * sum(p.numel() * p.element_size() for p in dist.params)
    if per == 0:
        return max_chunk
    return int(max(1, min(max_chunk, (float(memory_mb) * 2 ** 20) // per)))


# --------------------------------------------------------------------------- the attack

def run_lamp(model: nn.Module, shared: dict[str, torch.Tensor], visible: dict[str, torch.Tensor | None] | None, *,
             token_len: int | Sequence[int], labels: torch.Tensor | Sequence[int], tokenizer, cfg: dict | None = None,
             seed: int = 0, device: torch.device | str | None = None, prior: nn.Module | None = None,
             progress: Callable[[int, float], None] | None = None) -> LampResult:
    """Reconstruct the token sequence(s) behind ``shared`` (see the module docstring).

    ``token_len``: length of each sentence in tokens, special tokens included (one int for
    batch 1); ``labels``: the known labels (B,).  The true gradient must come from
    ``model(input_ids, attention_mask)`` with right padding (pad = [PAD] / eos), mean
    cross-entropy, in ``model_mode``."""
    from ..models.text import text_model_info

    t0 = time.time()
    c = resolve_cfg(cfg)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    labels = torch.as_tensor(labels, dtype=torch.long, device=device).reshape(-1)
    lengths = [int(token_len)] * len(labels) if isinstance(token_len, (int, np.integer)) else [int(n) for n in token_len]
    if len(lengths) != len(labels):
        raise ValueError(f"lamp: {len(lengths)} sequence lengths for {len(labels)} labels")
    B, T = len(lengths), max(lengths)
    info = text_model_info(model, tokenizer)
    family = info["family"]
    min_len = 3 if family == "bert" else 1
    if min(lengths) < min_len:
        raise ValueError(f"lamp: {family} sentences need at least {min_len} tokens, got {lengths}")
    model.eval() if c["model_mode"] == "eval" else model.train()
    E = info["embedding"].weight.detach()
    V, d = E.shape
    attn = (torch.arange(T, device=device)[None, :] < torch.as_tensor(lengths, device=device)[:, None]).long()
    pin_ids, pin = _pinning(family, info["special_ids"], lengths, T, device)
    allowed = _allowed_vocab(info, V, c["exclude_unused"], device)
    gen = torch.Generator(device="cpu").manual_seed(int(seed) % (2 ** 63))
    rng = np.random.default_rng(int(seed) % (2 ** 63))

    dist = MaskedGradDistance(model, shared, visible, c["loss"], c["tag_factor"], skip={info["embedding_param"]},
                              device=device)
    base_info = {"variant": c["variant"], "loss": c["loss"], "family": family, "batch_size": B, "lengths": lengths,
                 "tensors_used": len(dist), "tensors_dropped_encrypted": len(dist.dropped_encrypted),
                 "zero_tensors": len(dist.zero_tensors), "visible_entries_used": dist.n_visible,
                 "entries_considered": dist.n_total, "prior": "none" if prior is None else type(prior).__name__}

    def decode(ids: torch.Tensor) -> list[str]:
        drop = set(tokenizer.all_special_ids or [])
        return [tokenizer.decode([int(t) for t in ids[b, :lengths[b]] if int(t) not in drop],
                                 clean_up_tokenization_spaces=False) for b in range(B)]

    if len(dist) == 0:
        guess = torch.multinomial(allowed.float().cpu(), B * T, replacement=True, generator=gen).reshape(B, T)
        ids = torch.where(pin.cpu(), pin_ids.cpu(), guess)
        return LampResult(ids, decode(ids), [], float("nan"), "nothing_visible",
                          "no gradient entry LAMP can use is visible (all encrypted, or only the word-embedding "
                          "matrix, whose gradient LAMP never uses, is visible): returned a seeded uniform guess",
                          {**base_info, "seconds": round(time.time() - t0, 3), "iterations": 0}, labels.cpu(), lengths)

    # -- init size
    if isinstance(c["init_size"], (int, float)):
        init_size, init_src = float(c["init_size"]), "config"
    elif c["init_size"] == "auto":
        if info["pretrained"]:
            init_size, init_src = float(info["reference_embed_norm"]), "reference constant (pretrained model)"
        else:
            init_size, init_src = float(E[allowed].norm(dim=-1).mean()), "measured mean embedding norm"
    else:
        raise ValueError(f"lamp: init_size must be a number or 'auto', not {c['init_size']!r}")

    pin_vals = E[pin_ids]                       # B x T x d
    pin3 = pin[..., None]
    chunk = eval_chunk_for(dist, c["eval_chunk"], c["eval_memory_mb"])
    c = {**c, "eval_chunk": chunk}
    ev = _Evaluator(model, dist, attn, labels, chunk)
    deadline = None if c["time_limit"] is None else t0 + float(c["time_limit"])
    stopped = None

    def full(z: torch.Tensor) -> torch.Tensor:
        return torch.where(pin3, pin_vals, z)

    free_pos = [torch.nonzero(~pin[b]).flatten().cpu().numpy() for b in range(B)]

    # -- 1. initialisation: best of N(0,1) candidates, then random reorderings
    trace: list[dict] = []
    z = None
    best_init = math.inf
    n_init = c["init_candidates"]
    for s in range(0, n_init, c["eval_chunk"]):
        k = min(c["eval_chunk"], n_init - s)
        zs = torch.randn(k, B, T, d, generator=gen).to(device=device, dtype=E.dtype)
        losses = ev.many(torch.where(pin3[None], pin_vals[None], zs))
        j = int(torch.argmin(losses))
        if float(losses[j]) < best_init:
            best_init, z = float(losses[j]), zs[j].clone()
        if deadline is not None and time.time() > deadline:
            stopped = "time_limit"
            break
    n_perm = c["init_permutations"] if stopped is None else 0
    done = 0
    while done < n_perm:
        k = min(c["eval_chunk"], n_perm - done)
        cands = []
        for _ in range(k):
            zc = z.clone()
            for b in range(B):
                f = free_pos[b]
                if len(f) > 1:
                    zc[b, f] = z[b, f[rng.permutation(len(f))]]
            cands.append(zc)
        zs = torch.stack(cands)
        losses = ev.many(full(zs))
        j = int(torch.argmin(losses))
        if float(losses[j]) < best_init:
            best_init, z = float(losses[j]), zs[j].clone()
        done += k
        if deadline is not None and time.time() > deadline:
            stopped = "time_limit"
            break
    z = torch.where(pin3, z, F.normalize(z, dim=-1) * init_size)
    trace.append({"iteration": 0, "loss": best_init, "rec_loss": best_init, "reg_loss": 0.0, "lr": c["lr"],
                  "event": "init"})

    # -- 2./3. continuous optimisation with periodic discrete reordering
    z = z.detach().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=c["lr"])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=c["lr_step"], gamma=c["lr_decay"])
    best_total, best_x, best_it = math.inf, full(z).detach().clone(), 0
    it = 0
    swaps_accepted = 0
    n_steps = c["n_steps"] if stopped is None else 0
    for it in range(n_steps):
        if deadline is not None and time.time() > deadline:
            stopped = "time_limit"
            break
        x = full(z)
        rec = dist(ev.grads(x, create_graph=True))
        reg = c["coeff_reg"] * (x.norm(dim=-1).mean() - init_size) ** 2
        total = rec + reg
        tv = float(total.detach())
        if tv < best_total:
            best_total, best_x, best_it = tv, x.detach().clone(), it
        gz, = torch.autograd.grad(total, [z])
        z.grad = gz
        lr_now = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        if progress is not None:
            progress(it, tv)
        swap_now = it >= c["swap_burnin"] * c["n_steps"] and it % c["swap_every"] == 1
        if it % c["trace_every"] == 0 or swap_now:
            trace.append({"iteration": it, "loss": tv, "rec_loss": float(rec.detach()), "reg_loss": float(reg.detach()),
                          "lr": lr_now, "event": "step"})
        if swap_now:
            gain = _swap_round(z, opt, full, free_pos, ev, dist, prior, c, lengths, E, allowed, pin, pin_ids, rng)
            swaps_accepted += gain
            trace.append({"iteration": it, "loss": float("nan"), "rec_loss": float("nan"), "reg_loss": float("nan"),
                          "lr": opt.param_groups[0]["lr"], "event": f"swap:{gain}"})
    else:
        it = n_steps

    # -- 4. projection of the best iterate
    with torch.no_grad():
        ids = project_to_tokens(best_x, E, allowed)
        ids = torch.where(pin, pin_ids, ids)
        xp = E[ids]
        xp = torch.where(pin3, xp, F.normalize(xp, dim=-1) * best_x.norm(dim=-1, keepdim=True))
    final_rec = ev.one(xp)
    final_lm = None
    if prior is not None:
        with torch.no_grad():
            final_lm = float(lm_loss(prior, ids, lengths).mean())
    ids_cpu = ids.detach().cpu()
    result_info = {**base_info, "eval_chunk": chunk, "init_size": init_size, "init_size_source": init_src, "init_loss": best_init,
                   "best_total_loss": best_total, "best_iteration": best_it, "iterations": int(it),
                   "swaps_accepted": swaps_accepted, "gradient_evaluations": ev.n_evals,
                   "final_lm_loss": final_lm, "stopped": stopped or "n_steps",
                   "seconds": round(time.time() - t0, 3)}
    msg = f"{c['variant']} ({c['loss']}) on {len(dist)} tensors; stopped by {stopped or 'n_steps'} after {it} steps"
    return LampResult(ids_cpu, decode(ids_cpu), trace, final_rec, "ok", msg, result_info, labels.cpu(), lengths)


def _swap_round(z, opt, full, free_pos, ev: _Evaluator, dist, prior, c, lengths, E, allowed, pin, pin_ids,
                rng) -> int:
    """One discrete step: per sentence, the best of ``swap_candidates`` reorderings."""
    accepted = 0
    with torch.no_grad():
        for b, f in enumerate(free_pos):
            n = len(f)
            if n < 2:
                continue
            x = full(z).detach()
            ids = torch.where(pin, pin_ids, project_to_tokens(x, E, allowed))
            perms = _moves(n, c["swap_candidates"], rng)
            f_t = torch.as_tensor(f, device=z.device)
            xs = x[None].repeat(len(perms), 1, 1, 1)
            ids_c = ids[b][None].repeat(len(perms), 1)
            for k, p in enumerate(perms):
                src = f_t[torch.as_tensor(p, device=z.device)]
                xs[k, b, f_t] = x[b, src]
                ids_c[k, f_t] = ids[b, src]
            scores = ev.many(xs).to(torch.float64)
            if prior is not None and c["coeff_perplexity"]:
                lm = torch.cat([lm_loss(prior, ids_c[s:s + 64], [lengths[b]] * len(ids_c[s:s + 64]))
                                for s in range(0, len(perms), 64)])
                scores = scores + c["coeff_perplexity"] * lm.detach().cpu().to(torch.float64)
            j = int(torch.argmin(scores))
            if j != 0 and scores[j] < scores[0]:
                src = f_t[torch.as_tensor(perms[j], device=z.device)]
                z[b, f_t] = z[b, src].clone()
                st = opt.state.get(z, {})
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in st:
                        st[key][b, f_t] = st[key][b, src].clone()
                accepted += 1
    return accepted


__all__ = ["DEFAULTS", "VARIANTS", "LampResult", "MaskedGradDistance", "resolve_cfg", "run_lamp", "eval_chunk_for",
           "project_to_tokens", "lm_loss"]
