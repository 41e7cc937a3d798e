"""DAGER (Petrov et al., NeurIPS 2024) for GPT-2: exact text recovery from the gradients of
the fused attention projection ``c_attn``, including its behaviour under selective encryption.

Written from the algorithm description in ``reference/text_attacks.md`` §2 (no code taken
from the official repository).  Analytic: no labels, no language-model prior, no optimiser.

Why it works.  For a linear layer Y = X W (GPT-2's ``Conv1D``: W is 768×2304) the weight
gradient is ∂L/∂W = Xᵀ·dY, so every row of its transpose (2304×768; row j belongs to output
unit j) is a linear combination of the rows of X, the ``ln_1`` outputs that feed ``c_attn``.
Hence

* the numerical rank of the transposed gradient counts the distinct rows of X: in block 0 the
  distinct (token, position) pairs of the batch, in block ≥ 1 the distinct *prefixes*
  (causality).  The estimate ``B`` is the maximum over blocks 0–9, clamped to 768 − cutoff;
* the span of block 0's gradient (basis R1) contains ln_1(wte[v] + wpe[p]) exactly for the
  tokens v at position p of some sentence: the layer-1 filter scores the **whole vocabulary**
  at every position p (vectorised, all 50257 rows at once, in chunks);
* the span of block 1's gradient (R2) contains block 1's ln_1 output of every true prefix:
  the layer-2 filter grows prefixes greedily one position at a time, running block 0 on
  ``prefix + candidate`` and keeping the candidates whose new position lies in span R2.
  Causality makes this exact; earlier positions of a prefix were checked when the prefix was
  formed, so only the new position is computed, with the prefix's block-0 keys/values cached.
  A prefix that cannot be extended (or that is extended by EOS) is a finished sentence.
  If fewer sentences than the batch size are found, the batch is filled with the
  best-incorrect candidates (lowest mean span distance, de-duplicated by ``distinct_thresh``).

The span test of a vector e against an orthonormal basis R (rows) is the DAGER distance
‖e/‖e‖ − P_R(e/‖e‖)‖₂, evaluated in float64 as sqrt(1 − ‖R e/‖e‖‖²).

Selective encryption (``visible[name]``: True = entry sent in plaintext).  The attacker
never sees encrypted entries.  Two attacker variants (``cfg["variant"]``):

* ``visible_rows`` (default; **the stronger one**): each span is built only from the rows of
  the transposed gradient whose 768 entries are all visible.  Each such row lies exactly in
  span(X), so if the visible rows of a block reach its rank (certified when there are more
  full rows than their rank: generically the rows then span all of span(X)), the basis is
  exact and DAGER is unaffected by the encryption.  If a needed block has too few full rows,
  or its visible rows span less than B (blocks ≥ 1 must see every distinct prefix; the query
  rows of the *last* block only see the pooled positions), it reports ``failed`` with the
  reason (it never guesses a partial span).
* ``zero_fill`` (naive): encrypted entries are replaced by 0 and the whole matrix is used.
  Every row touched by encryption leaves span(X), so the matrix becomes (near) full rank, B
  clamps to 768 − rank_cutoff, the span test stops separating true tokens, and the attack
  fails (no token passes, or a combinatorial explosion stopped by the candidate caps or the
  time limit).  It only works when very few rows of blocks 0–1 are touched.

``visible_rows`` dominates ``zero_fill``: whenever zero-fill succeeds (few touched rows,
the extra directions are harmless), there are plenty of untouched full rows and
``visible_rows`` succeeds too, with an exact span; with many touched rows zero-fill breaks
while ``visible_rows`` still works as long as enough untouched rows remain.  (A third,
still stronger attacker would complete the masked low-rank matrix; not implemented.)

When the ``c_attn`` gradients of blocks 0 or 1 are entirely encrypted (e.g. the ``Attn`` or
``OneFifth-1`` selections) DAGER cannot form its spans: the result is ``failed`` with that
reason, immediately.  All loops check ``time_limit`` and the candidate caps.

Numerical rank (``rank_tol``).  ``"gap"`` (default): the rank is placed at the largest
multiplicative gap (≥ ``rank_gap``) of the singular spectrum whose lower side lies below
NumPy's default tolerance (σ_max·max(M, N)·eps of the gradient's dtype); without such a gap,
NumPy's default is used.  ``None``: NumPy's default.  A float: absolute tolerance, as
DAGER's ``--rank_tol``.  ``"readme"``: DAGER's README table by batch size (1–2: 1e-7,
4–16: 1e-8, 32–128: 1e-9, else NumPy's default).  The README's absolute tolerances were
tuned for the gradient scale of pretrained GPT-2: on a random-init GPT-2 the float32 noise
floor of the singular values is ~1e-7, so 1e-8 would count noise as rank; the scale-free
gap rule is the default for that reason.

Random-init GPT-2 caveat: with its initial LayerNorm (γ = 1, β = 0) ln_1 is linear up to a
scale, so span R1 also contains ln_1(wte[v] + wpe[p]) for token/position combinations of
the batch that never occurred (e.g. v at p when v occurred at q and another token occurred at
both p and q).  The layer-1 filter then passes more candidates (all of them batch tokens);
the layer-2 filter, through block 0's non-linearities, removes them.  Pretrained GPT-2
(β ≠ 0) does not have this degeneracy.

Length: a port of one algorithm (rank and span estimation, the two filters, the greedy decoder
with its cache, both encryption variants) that reads best top to bottom, in the order of its
description above; none of its pieces is used elsewhere.
"""
from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

NAME = "dager"
VARIANTS = ("visible_rows", "zero_fill")

#: reference defaults (DAGER's argparse defaults / scripts/gpt2.sh), plus this port's guards
DEFAULTS: dict[str, Any] = {
    "variant": "visible_rows",      # attacker under selective encryption: visible_rows | zero_fill
    "rank_tol": "gap",              # "gap" | "readme" | None (NumPy default) | float (absolute)
    "rank_gap": 1e3,                # minimum singular-value ratio accepted as the rank gap
    "rank_cutoff": 20,              # B = min(B, d_model - rank_cutoff)
    "rank_blocks": 10,              # the rank is the max over blocks 0..rank_blocks-1
    "n_layers": 2,                  # spans of blocks 0..n_layers-1 (>= 2; filters at layers 2.. use block 0..)
    "l1_span_thresh": 1e-5,
    "l2_span_thresh": 1e-3,
    "l1_filter": "all",             # "all" keeps every passing token, "maxB" the B closest
    "parallel": 1000,               # candidate sequences per block-0 batch
    "distinct_thresh": 0.7,         # best-incorrect fill: max fraction of equal positions
    "batch_size": None,             # number of sentences (attacker knowledge); None = do not fill
    "max_len": None,                # longest sentence searched; None = model.config.n_positions
    "time_limit": 600.0,            # seconds; checked inside every loop
    "max_l1_candidates": None,      # per-position cap on layer-1 survivors (None = no cap)
    "max_step_candidates": 2_000_000,   # cap on prefix×token extensions per position
    "max_prefixes": 20_000,         # cap on live prefixes
    "pool_size": 512,               # best-incorrect candidates kept for filling
    "vocab_chunk": 4096,            # vocabulary rows per layer-1 batch (None = all at once)
    "span_dtype": "float64",        # dtype of span bases and distances
}


def _int(lo: int, null: bool = False) -> dict:
    return {"type": ["integer", "null"] if null else "integer", "minimum": lo}


#: JSON schema of each option (gibench.params: checked when the DAG is built)
SCHEMA: dict[str, dict] = {
    "variant": {"enum": list(VARIANTS)},
    "rank_tol": {"anyOf": [{"enum": ["gap", "readme", None]}, {"type": "number", "exclusiveMinimum": 0}]},
    "rank_gap": {"type": "number", "exclusiveMinimum": 1},
    "rank_cutoff": _int(0),
    "rank_blocks": _int(1),
    "n_layers": _int(2),
    "l1_span_thresh": {"type": "number", "exclusiveMinimum": 0},
    "l2_span_thresh": {"type": "number", "exclusiveMinimum": 0},
    "l1_filter": {"enum": ["all", "maxB"]},
    "parallel": _int(1),
    "distinct_thresh": {"type": "number", "minimum": 0, "maximum": 1},
    "batch_size": _int(1, null=True),
    "max_len": _int(1, null=True),
    "time_limit": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "max_l1_candidates": _int(1, null=True),
    "max_step_candidates": _int(1),
    "max_prefixes": _int(1),
    "pool_size": _int(1),
    "vocab_chunk": _int(1, null=True),
    "span_dtype": {"enum": ["float32", "float64"]},
}


@dataclass
class DagerResult:
    """``sequences``: recovered token ids, one list per sentence (``batch_size`` of them when
    it is known, found sentences first); ``texts``: their decoding when a tokenizer is given;
    ``status``: 'ok' | 'failed'; ``message``: what happened / why it failed; ``info``: rank
    estimate, timings, per-position candidate counts, variant, ...; ``final_loss``: mean
    layer-2 span distance of the returned sequences (nan when none); ``trace``: per-position
    rows."""
    sequences: list[list[int]]
    texts: list[str] | None
    status: str
    message: str
    info: dict = field(default_factory=dict)
    final_loss: float = float("nan")
    trace: list[dict] | None = None


_KV_BUDGET = 1 << 26  # elements of gathered prefix keys+values per block and batch


class _Stop(Exception):
    """Internal: abort the search (time limit, candidate caps) with a reason."""


# ----------------------------------------------------------------------------- helpers

def resolve_cfg(cfg: dict | None) -> dict:
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"dager: unknown cfg key(s) {unknown}; known: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **cfg}
    if out["variant"] not in VARIANTS:
        raise ValueError(f"dager: cfg 'variant' must be one of {VARIANTS}, not {out['variant']!r}")
    if int(out["n_layers"]) < 2:
        raise ValueError("dager: cfg 'n_layers' must be >= 2 (the decoder filter needs block 1's span)")
    if out["l1_filter"] not in ("all", "maxB"):
        raise ValueError(f"dager: cfg 'l1_filter' must be 'all' or 'maxB', not {out['l1_filter']!r}")
    tol = out["rank_tol"]
    if not (tol is None or tol in ("gap", "readme") or isinstance(tol, (int, float))):
        raise ValueError(f"dager: cfg 'rank_tol' must be 'gap', 'readme', None or a number, not {tol!r}")
    return out


def readme_rank_tol(batch_size: int | None) -> float | None:
    """DAGER README guidance: 1–2 → 1e-7, 4–16 → 1e-8, 32–128 → 1e-9, otherwise NumPy's default."""
    if batch_size is None:
        return None
    if batch_size <= 2:
        return 1e-7
    if batch_size <= 16:
        return 1e-8
    if batch_size <= 128:
        return 1e-9
    return None


def numerical_rank(s: torch.Tensor, shape: tuple[int, int], data_eps: float, tol: Any = "gap",
                   gap: float = 1e3, batch_size: int | None = None) -> int:
    """Rank from singular values ``s`` (descending) of a matrix of ``shape`` whose entries carry
    relative rounding ``data_eps`` (the eps of the gradient's dtype)."""
    s = s.detach().double().cpu()
    if s.numel() == 0 or float(s[0]) <= 0.0:
        return 0
    np_tol = float(s[0]) * max(shape) * data_eps
    if tol == "readme":
        tol = readme_rank_tol(batch_size)
    if tol is None:
        return int((s > np_tol).sum())
    if isinstance(tol, (int, float)):
        return int((s > float(tol)).sum())
    # "gap": largest ratio s[i]/s[i+1] whose lower side is below NumPy's tolerance
    floor = float(s[0]) * 1e-300
    sc = s.clamp_min(floor)
    ratios = sc[:-1] / sc[1:]
    lower_is_noise = s[1:] <= np_tol
    if ratios.numel() and bool(lower_is_noise.any()):
        r = torch.where(lower_is_noise, ratios, torch.zeros_like(ratios))
        i = int(torch.argmax(r))
        if float(r[i]) >= gap:
            return i + 1
    return int((s > np_tol).sum())


def _transformer(model: nn.Module) -> nn.Module:
    tr = getattr(model, "transformer", None)
    if tr is None and hasattr(model, "wte") and hasattr(model, "h"):
        tr = model
    if tr is None:
        raise TypeError(f"dager: expected a GPT-2 model (with .transformer.wte/.wpe/.h), got {type(model).__name__}")
    return tr


def _eos_id(model: nn.Module, tokenizer: Any, eos_id: int | None) -> int | None:
    if eos_id is not None:
        return int(eos_id)
    for src in (getattr(model, "config", None), tokenizer):
        for attr in ("eos_token_id", "pad_token_id"):
            v = getattr(src, attr, None) if src is not None else None
            if isinstance(v, int):
                return v
    return None


class _Span:
    """Orthonormal row basis R (r × d) and the DAGER span distance of row vectors to it."""

    def __init__(self, basis: torch.Tensor):
        self.R = basis  # (r, d), span dtype

    def dist(self, e: torch.Tensor) -> torch.Tensor:
        e = e.to(self.R.dtype)
        e = e / e.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)
        c = e @ self.R.T
        return (1.0 - (c * c).sum(-1)).clamp_min(0.0).sqrt()


# ----------------------------------------------------------------------------- spans

def _cattn_matrix(model: nn.Module, shared: dict, visible: dict | None, block: int, variant: str):
    """(status, rows×768 matrix as the variant sees it, name, #rows) for block ``block``."""
    tr = _transformer(model)
    pname = {id(p): n for n, p in model.named_parameters()}
    name = pname.get(id(tr.h[block].attn.c_attn.weight), f"transformer.h.{block}.attn.c_attn.weight")
    g = shared.get(name)
    if g is None:
        return "missing", None, name, 0
    gt = g.detach().T  # Conv1D (in, out) → rows = output units (2304 × 768)
    vis = (visible or {}).get(name)
    if vis is None:
        return "visible", gt, name, gt.shape[0]
    vt = vis.to(torch.bool).reshape(g.shape).T.to(gt.device)
    if not bool(vt.any()):
        return "encrypted", None, name, 0
    if variant == "visible_rows":
        rows = vt.all(dim=1)
        n = int(rows.sum())
        if n == 0:
            return "no_full_rows", None, name, 0
        return ("visible" if n == gt.shape[0] else "partial"), gt[rows], name, n
    # zero_fill
    return ("visible" if bool(vt.all()) else "partial"), torch.where(vt, gt, torch.zeros_like(gt)), name, gt.shape[0]


def _structural_problem(i: int, b: dict | None, L: int) -> str | None:
    """Why block ``i`` cannot give a span, judged from the mask alone (no linear algebra)."""
    if b is None or b["status"] == "missing":
        return f"the c_attn gradient of block {i} is not in the shared update"
    if b["status"] == "encrypted":
        return (f"the c_attn gradient of block {i} ({b['name']}) is fully encrypted; DAGER needs "
                f"the spans of blocks 0..{L - 1}")
    if b["status"] == "no_full_rows":
        return (f"no row of block {i}'s c_attn gradient ({b['name']}) is fully visible; "
                f"the visible_rows attacker cannot form its span")
    return None


def estimate_spans(model: nn.Module, shared: dict, visible: dict | None, cfg: dict,
                   deadline: float | None = None) -> dict:
    """Rank estimate B and span bases of blocks 0..n_layers-1, as the variant sees them.

    Returns a dict with ``B`` (clamped) and ``B_raw``, ``rank_per_block``, ``blocks``
    (per-block status / fully visible rows / rank / certified), ``bases`` (list of _Span or
    None) and ``problem`` (None or the reason the attack cannot proceed).  Blocks whose
    needed gradient is missing or encrypted are reported before any SVD is computed."""
    tr = _transformer(model)
    n_blocks = len(tr.h)
    d = tr.wte.weight.shape[1]
    sdt = getattr(torch, cfg["span_dtype"])
    L = int(cfg["n_layers"])
    empty = {"B": 0, "B_raw": 0, "rank_clamped": False, "rank_certified": False, "rank_per_block": {},
             "blocks": {}, "bases": [None] * L}
    if n_blocks < L:
        return {**empty, "problem": f"model has {n_blocks} blocks, DAGER needs n_layers={L}"}
    bs = cfg["batch_size"]
    blocks: dict[int, dict] = {}
    mats: dict[int, torch.Tensor] = {}
    for i in range(max(min(int(cfg["rank_blocks"]), n_blocks), L)):
        status, M, name, nrows = _cattn_matrix(model, shared, visible, i, cfg["variant"])
        blocks[i] = {"name": name, "status": status, "rows": nrows, "rank": 0, "certified": False}
        if M is not None:
            mats[i] = M
    for i in range(L):
        why = _structural_problem(i, blocks.get(i), L)
        if why:
            return {**empty, "blocks": blocks, "problem": why}
    bases: list[_Span | None] = [None] * L
    for i, M in mats.items():
        if deadline is not None and time.time() > deadline:
            raise _Stop(f"time limit reached while estimating the rank (block {i})")
        entry = blocks[i]
        eps = torch.finfo(M.dtype).eps if M.dtype.is_floating_point else 0.0
        Md = M.to(sdt)
        if i < L:
            _, s, vh = torch.linalg.svd(Md, full_matrices=False)
        else:
            s, vh = torch.linalg.svdvals(Md), None
        r = numerical_rank(s, tuple(M.shape), eps, cfg["rank_tol"], cfg["rank_gap"], bs)
        entry["rank"] = r
        # generic position: more full rows than their rank => the rows span all of span(X)
        entry["certified"] = entry["rows"] > r
        entry["sigma"] = [float(s[0]), float(s[r - 1]) if r else 0.0,
                          float(s[r]) if r < s.numel() else 0.0]
        if i < L and r > 0:
            bases[i] = _Span(vh[: min(r, d - int(cfg["rank_cutoff"]))].contiguous())
    usable = [b for b in blocks.values() if b["rank"] > 0]
    cert = [b["rank"] for b in usable if b["certified"]]
    B_raw = max(cert) if cert else (max(b["rank"] for b in usable) if usable else 0)
    B = min(B_raw, d - int(cfg["rank_cutoff"]))
    out = {"B": B, "B_raw": B_raw, "rank_clamped": B < B_raw, "rank_certified": bool(cert),
           "rank_per_block": {i: b["rank"] for i, b in blocks.items()}, "blocks": blocks,
           "bases": bases, "problem": None}
    for i in range(L):
        b = blocks[i]
        why = None
        if b["rank"] == 0:
            why = f"the visible c_attn gradient of block {i} is zero"
        elif cfg["variant"] == "visible_rows" and not b["certified"]:
            why = (f"block {i} has only {b['rows']} fully visible c_attn rows and they are all "
                   f"independent (rank {b['rank']}); its span may be incomplete (B estimate {B})")
        elif i >= 1 and b["rank"] < B_raw:
            # every block >= 1 sees all distinct prefixes: a smaller rank means a partial span
            # (e.g. only the query rows of the last block, which see the pooled positions only)
            why = (f"the visible c_attn rows of block {i} span rank {b['rank']} < B={B_raw} "
                   f"(the distinct prefixes): its span is incomplete")
        if why:
            out["problem"] = why
            break
    return out


# ----------------------------------------------------------------------------- model pieces

def _vocab_scan(tr: nn.Module, span: _Span, p: int, chunk: int, deadline: float) -> torch.Tensor:
    """Span distance of ln_1(wte[v] + wpe[p]) for every token v (vectorised over the vocabulary)."""
    wte, wpe = tr.wte.weight, tr.wpe.weight
    ln = tr.h[0].ln_1
    out = torch.empty(wte.shape[0], dtype=span.R.dtype, device=span.R.device)
    for a in range(0, wte.shape[0], chunk):
        if time.time() > deadline:
            raise _Stop(f"time limit reached in the layer-1 scan at position {p}")
        e = ln(wte[a:a + chunk] + wpe[p])
        out[a:a + chunk] = span.dist(e)
    return out


def _mlp(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
    m = block.mlp
    return m.c_proj(m.act(m.c_fc(block.ln_2(h))))


def _attn_step(block: nn.Module, h: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor):
    """One new position for N sequences: h (N, d); cached keys/values (N, H, p, D).
    Returns the attention output (N, d) and the new key/value rows (N, H, 1, D)."""
    at = block.attn
    H = at.num_heads
    D = at.head_dim
    q, k, v = at.c_attn(block.ln_1(h)).split(at.split_size, dim=-1)
    N = h.shape[0]
    q = q.view(N, H, 1, D)
    k = k.view(N, H, 1, D)
    v = v.view(N, H, 1, D)
    K = torch.cat([kc, k], dim=2)
    V = torch.cat([vc, v], dim=2)
    scale = at.head_dim ** -0.5 if at.scale_attn_weights else 1.0
    if at.scale_attn_by_inverse_layer_idx:
        scale /= float(at.layer_idx + 1)
    w = torch.softmax((q.float() @ K.float().transpose(-1, -2)) * scale, dim=-1).to(V.dtype)
    o = (w @ V).reshape(N, H * D)
    return at.c_proj(o), k, v


def forward_hidden(model: nn.Module, ids: torch.Tensor, n_blocks: int) -> list[torch.Tensor]:
    """Full-sequence causal forward through blocks 0..n_blocks-1 using the public submodules;
    returns the residual stream after each block (list of (N, T, d)).  Used to check the
    incremental decoder against transformers' own forward."""
    tr = _transformer(model)
    N, T = ids.shape
    h = tr.wte(ids) + tr.wpe(torch.arange(T, device=ids.device))
    outs = []
    for b in range(n_blocks):
        blk = tr.h[b]
        at = blk.attn
        H, D = at.num_heads, at.head_dim
        q, k, v = at.c_attn(blk.ln_1(h)).split(at.split_size, dim=-1)
        q, k, v = (t.view(N, T, H, D).transpose(1, 2) for t in (q, k, v))
        scale = D ** -0.5 if at.scale_attn_weights else 1.0
        if at.scale_attn_by_inverse_layer_idx:
            scale /= float(at.layer_idx + 1)
        s = (q.float() @ k.float().transpose(-1, -2)) * scale
        causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
        s = s.masked_fill(~causal, float("-inf"))
        o = (torch.softmax(s, -1).to(v.dtype) @ v).transpose(1, 2).reshape(N, T, H * D)
        h = h + at.c_proj(o)
        h = h + _mlp(blk, h)
        outs.append(h)
    return outs


# ----------------------------------------------------------------------------- decoder

class _Decoder:
    def __init__(self, model, spans: list[_Span], cfg: dict, eos: int | None, deadline: float,
                 progress: Callable | None):
        self.tr = _transformer(model)
        self.spans = spans
        self.cfg = cfg
        self.eos = eos
        self.deadline = deadline
        self.progress = progress
        self.L = len(spans)
        blk = self.tr.h[0].attn
        self.H, self.D = blk.num_heads, blk.head_dim
        self.dev = self.tr.wte.weight.device
        self.dt = self.tr.wte.weight.dtype
        self.finished: list[tuple[float, list[int]]] = []      # (mean distance, tokens)
        self.pool: list[tuple[float, int, tuple]] = []          # max-heap via negation
        self._pool_n = 0
        self.trace: list[dict] = []
        self.l1_counts: list[int] = []
        self.t_l1 = 0.0
        self.t_l2 = 0.0
        self.live: tuple | None = None

    def _check_time(self, where: str):
        if time.time() > self.deadline:
            raise _Stop(f"time limit of {self.cfg['time_limit']} s reached {where}")

    def _pool_add(self, mean_d: torch.Tensor, seqs: torch.Tensor):
        k = min(int(self.cfg["pool_size"]), mean_d.numel())
        if k == 0:
            return
        vals, idx = torch.topk(mean_d, k, largest=False)
        for v, i in zip(vals.tolist(), idx.tolist()):
            item = (-v, self._pool_n, tuple(seqs[i].tolist()))
            self._pool_n += 1
            if len(self.pool) < int(self.cfg["pool_size"]):
                heapq.heappush(self.pool, item)
            elif item[0] > self.pool[0][0]:
                heapq.heapreplace(self.pool, item)

    def layer1(self, p: int, B: int) -> torch.Tensor:
        t = time.time()
        chunk = self.cfg["vocab_chunk"] or self.tr.wte.weight.shape[0]
        d = _vocab_scan(self.tr, self.spans[0], p, int(chunk), self.deadline)
        keep = torch.nonzero(d < float(self.cfg["l1_span_thresh"])).flatten()
        keep = keep[torch.argsort(d[keep])]
        if self.cfg["l1_filter"] == "maxB":
            keep = keep[:max(B, 1)]
        cap = self.cfg["max_l1_candidates"]
        if cap is not None and keep.numel() > int(cap):
            raise _Stop(f"{keep.numel()} tokens pass the layer-1 filter at position {p} "
                        f"(cap max_l1_candidates={cap}): span too loose")
        self.t_l1 += time.time() - t
        return keep

    def run(self, B: int, max_len: int):
        cfg = self.cfg
        n_cache = self.L - 1
        pref = torch.zeros(1, 0, dtype=torch.long, device=self.dev)
        dsum = torch.zeros(1, dtype=torch.float64, device=self.dev)
        cache = [(torch.zeros(1, self.H, 0, self.D, dtype=self.dt, device=self.dev),) * 2
                 for _ in range(n_cache)]
        self.live = (pref, dsum)
        stop_reason = "no token passes the layer-1 filter"
        p = 0
        while pref.shape[0] > 0:
            self._check_time(f"at position {p}")
            if p >= max_len:
                stop_reason = f"max_len {max_len} reached"
                self._finish(pref, dsum, p)
                pref = pref[:0]
                break
            cands = self.layer1(p, B)
            self.l1_counts.append(int(cands.numel()))
            if cands.numel() == 0:
                if p == 0:
                    raise _Stop("no vocabulary token lies within l1_span_thresh of the block-0 span at "
                                "position 0")
                self._finish(pref, dsum, p)
                pref = pref[:0]
                stop_reason = f"no token passes the layer-1 filter at position {p}"
                self._log(p, 0, 0, 0)
                break
            n, m = pref.shape[0], cands.numel()
            total = n * m
            if total > int(cfg["max_step_candidates"]):
                raise _Stop(f"{n} prefixes × {m} tokens = {total} extensions at position {p} exceed "
                            f"max_step_candidates={cfg['max_step_candidates']} (combinatorial explosion)")
            t = time.time()
            keep_pi, keep_ci, keep_d, keep_kv = [], [], [], [[] for _ in range(n_cache)]
            has_ext = torch.zeros(n, dtype=torch.bool, device=self.dev)
            # `parallel` sequences per batch, fewer for long prefixes (bounds the gathered KV cache)
            par = max(1, min(int(cfg["parallel"]), _KV_BUDGET // max(1, 2 * self.H * self.D * p)))
            with torch.no_grad():
                for a in range(0, total, par):
                    self._check_time(f"in the layer-2 filter at position {p}")
                    flat = torch.arange(a, min(a + par, total), device=self.dev)
                    pi, ci = flat // m, cands[flat % m]
                    h = self.tr.wte.weight[ci] + self.tr.wpe.weight[p]
                    dist = torch.zeros(flat.numel(), dtype=torch.float64, device=self.dev)
                    new_kv = []
                    for k in range(n_cache):
                        blk = self.tr.h[k]
                        kc, vc = cache[k]
                        o, kn, vn = _attn_step(blk, h, kc[pi], vc[pi])
                        h = h + o
                        h = h + _mlp(blk, h)
                        new_kv.append((kn, vn))
                        dk = self.spans[k + 1].dist(self.tr.h[k + 1].ln_1(h)).double()
                        dist = torch.maximum(dist, dk)
                    ok = dist < float(cfg["l2_span_thresh"])
                    mean_d = (dsum[pi] + dist) / (p + 1)
                    bad = ~ok
                    if bool(bad.any()):
                        seqs = torch.cat([pref[pi[bad]], ci[bad, None]], dim=1)
                        self._pool_add(mean_d[bad], seqs)
                    if bool(ok.any()):
                        has_ext[pi[ok]] = True
                        keep_pi.append(pi[ok])
                        keep_ci.append(ci[ok])
                        keep_d.append(dsum[pi[ok]] + dist[ok])
                        for k in range(n_cache):
                            keep_kv[k].append((new_kv[k][0][ok], new_kv[k][1][ok]))
            self.t_l2 += time.time() - t
            # prefixes with no surviving extension are finished sentences
            if p > 0 and bool((~has_ext).any()):
                self._finish(pref[~has_ext], dsum[~has_ext], p)
            if not keep_pi:
                stop_reason = f"no extension passes the layer-2 filter at position {p}"
                if p == 0:
                    raise _Stop("no token passes the layer-2 filter at position 0")
                pref = pref[:0]
                self._log(p, m, total, 0)
                break
            pi = torch.cat(keep_pi)
            ci = torch.cat(keep_ci)
            dnew = torch.cat(keep_d)
            newpref = torch.cat([pref[pi], ci[:, None]], dim=1)
            cache = [(torch.cat([cache[k][0][pi], torch.cat([kv[0] for kv in keep_kv[k]])], dim=2),
                      torch.cat([cache[k][1][pi], torch.cat([kv[1] for kv in keep_kv[k]])], dim=2))
                     for k in range(n_cache)]
            if self.eos is not None:
                is_eos = ci == self.eos
                if bool(is_eos.any()):
                    self._finish(newpref[is_eos], dnew[is_eos], p + 1)
                    keep = ~is_eos
                    newpref, dnew = newpref[keep], dnew[keep]
                    cache = [(kc[keep], vc[keep]) for kc, vc in cache]
            if newpref.shape[0] > int(cfg["max_prefixes"]):
                raise _Stop(f"{newpref.shape[0]} live prefixes at position {p} exceed "
                            f"max_prefixes={cfg['max_prefixes']} (combinatorial explosion)")
            pref, dsum = newpref, dnew
            self.live = (pref, dsum)
            self._log(p, m, total, pref.shape[0])
            if self.progress is not None:
                self.progress(p, float(pref.shape[0]))
            p += 1
        self.live = None
        return stop_reason

    def _finish(self, pref: torch.Tensor, dsum: torch.Tensor, length: int):
        for row, ds in zip(pref.tolist(), dsum.tolist()):
            self.finished.append((ds / max(length, 1), row))

    def _log(self, p, m, total, survivors):
        self.trace.append({"position": p, "l1_candidates": m, "extensions": total,
                           "survivors": survivors, "finished": len(self.finished),
                           "l1_seconds": round(self.t_l1, 4), "l2_seconds": round(self.t_l2, 4)})

    def pool_sorted(self) -> list[tuple[float, list[int]]]:
        return [(-v, list(s)) for v, _, s in sorted(self.pool, key=lambda x: (-x[0], x[1]))]


def _similar(a: list[int], b: list[int], thresh: float) -> bool:
    n = max(len(a), len(b), 1)
    same = sum(1 for x, y in zip(a, b) if x == y)
    return same / n > thresh


def _distinct_prefixes(seqs: list[list[int]]) -> int:
    return len({tuple(s[:i + 1]) for s in seqs for i in range(len(s))})


# ----------------------------------------------------------------------------- entry points

def dager(model: nn.Module, shared: dict[str, torch.Tensor], visible: dict[str, torch.Tensor | None] | None,
          cfg: dict | None = None, *, tokenizer: Any = None, eos_id: int | None = None,
          device: str | torch.device | None = None, progress: Callable | None = None) -> DagerResult:
    """Run DAGER on GPT-2 (see the module docstring).  Never raises for defended inputs:
    anything that stops the attack becomes ``status='failed'`` with a reason."""
    cfg = resolve_cfg(cfg)
    t0 = time.time()
    deadline = t0 + float(cfg["time_limit"])
    tr = _transformer(model)
    if device is not None:
        dev = torch.device(device)
        if tr.wte.weight.device != dev:
            model = model.to(dev)
            tr = _transformer(model)
    dev = tr.wte.weight.device
    shared = {n: g.to(dev) for n, g in shared.items()}
    visible = {n: (v.to(dev) if v is not None else None) for n, v in (visible or {}).items()}
    eos = _eos_id(model, tokenizer, eos_id)
    bs = cfg["batch_size"]
    info: dict[str, Any] = {"variant": cfg["variant"], "batch_size": bs, "eos_id": eos}
    sequences: list[list[int]] = []
    dists: list[float] = []
    status, message = "ok", ""
    dec: _Decoder | None = None
    try:
        with torch.no_grad():
            sp = estimate_spans(model, shared, visible, cfg, deadline)
        info.update({"B": sp["B"], "B_raw": sp["B_raw"], "rank_clamped": sp["rank_clamped"],
                     "rank_certified": sp["rank_certified"],
                     "rank_per_block": sp["rank_per_block"],
                     "blocks": {i: {k: v for k, v in b.items() if k != "name"} for i, b in sp["blocks"].items()},
                     "span_dims": [s.R.shape[0] if s is not None else 0 for s in sp["bases"]],
                     "rank_seconds": round(time.time() - t0, 4)})
        if sp["problem"]:
            raise _Stop(sp["problem"])
        max_len = int(cfg["max_len"] or getattr(model.config, "n_positions", tr.wpe.weight.shape[0]))
        max_len = min(max_len, tr.wpe.weight.shape[0])
        dec = _Decoder(model, sp["bases"], cfg, eos, deadline, progress)
        with torch.no_grad():
            info["stop"] = dec.run(sp["B"], max_len)
        found = sorted(dec.finished, key=lambda x: x[0])
        info["n_found"] = len(found)
        if bs is not None and len(found) > bs:
            found = found[:bs]
        sequences = [s for _, s in found]
        dists = [d for d, _ in found]
        message = f"recovered {len(found)} sentence(s); rank estimate B={sp['B']}"
        if not found:
            status, message = "failed", "the decoder finished no sentence"
        info["explained_rank"] = _distinct_prefixes(sequences)
    except _Stop as e:
        status, message = "failed", str(e)
        if dec is not None:
            found = sorted(dec.finished, key=lambda x: x[0])
            partial = []
            if dec.live is not None:
                pref, dsum = dec.live
                L = max(pref.shape[1], 1)
                partial = [(d / L, s) for s, d in zip(pref.tolist(), dsum.tolist())]
                partial.sort(key=lambda x: x[0])
            best = (found + partial)[: (bs or len(found) + len(partial))]
            sequences = [s for _, s in best if s]
            dists = [d for d, s in best if s]
            info["n_found"] = len(found)
    # fill up to the batch size with the best-incorrect candidates (DAGER), then repeats
    n_filled = 0
    if bs is not None and len(sequences) < bs:
        pool = dec.pool_sorted() if dec is not None else []
        for d, s in pool:
            if len(sequences) >= bs:
                break
            if any(_similar(s, t, float(cfg["distinct_thresh"])) for t in sequences):
                continue
            sequences.append(s)
            dists.append(d)
            n_filled += 1
        base = list(sequences)
        i = 0
        while len(sequences) < bs:
            sequences.append(list(base[i % len(base)]) if base else [])
            dists.append(dists[i % len(base)] if base else float("nan"))
            n_filled += 1
            i += 1
    info["n_filled"] = n_filled
    if dec is not None:
        info.update({"l1_candidates_per_position": dec.l1_counts,
                     "l1_seconds": round(dec.t_l1, 4), "l2_seconds": round(dec.t_l2, 4),
                     "l1_seconds_per_position": round(dec.t_l1 / max(len(dec.l1_counts), 1), 4)})
    info["seconds"] = round(time.time() - t0, 4)
    texts = None
    if tokenizer is not None:
        texts = [tokenizer.decode([t for t in s if t != eos]) for s in sequences]
    valid = [d for d in dists if d == d]
    final = float(sum(valid) / len(valid)) if valid else float("nan")
    return DagerResult(sequences=sequences, texts=texts, status=status, message=message, info=info,
                       final_loss=final, trace=dec.trace if dec is not None else None)


def run(model: nn.Module, shared: dict[str, torch.Tensor], visible: dict[str, torch.Tensor | None] | None,
        *, tokenizer: Any = None, cfg: dict | None = None, seed: int = 0,
        device: str | torch.device | None = None, progress: Callable | None = None,
        batch_size: int | None = None, eos_id: int | None = None, **_ignored: Any) -> DagerResult:
    """Registry entry point (``ATTACKS['dager']``).  DAGER is deterministic: ``seed`` is only
    recorded.  ``batch_size`` (number of sentences, attacker knowledge) overrides
    ``cfg['batch_size']``; extra keyword arguments of the generic attack call (labels,
    input_shape, ...) are ignored — DAGER needs no labels."""
    cfg = dict(cfg or {})
    if batch_size is not None:
        cfg["batch_size"] = int(batch_size)
    res = dager(model, shared, visible, cfg, tokenizer=tokenizer, eos_id=eos_id, device=device,
                progress=progress)
    res.info["seed"] = int(seed)
    return res


__all__ = ["NAME", "VARIANTS", "DEFAULTS", "DagerResult", "run", "dager", "estimate_spans",
           "numerical_rank", "readme_rank_tol", "forward_hidden"]
