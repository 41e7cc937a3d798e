r"""Input sensitivity of the gradient: ``Sens_i = ‖∂g_i/∂x‖₂`` (paper, section 4.2).

``g(x) = ∇_θ L(f(x; θ), y)`` is the client gradient as a function of the model input ``x``
(the normalised image; for a text model fed token ids, the word-embedding vectors of the
tokens, see :class:`GradientJacobian`).  ``J = ∂g/∂x`` is the ``M × n`` Jacobian (``M``
gradient entries, ``n`` input coordinates; for a batch, ``x`` is the whole batch), and
``Sens_i² = Σ_j J_ij²`` is the squared norm of row ``i``.  This is the derivative w.r.t. the
*input*; the derivative w.r.t. a soft label (FedML-HE's released code) equals the gradient
itself for one sample and would make Sens coincide with Grad.

Three estimators, all device-agnostic and vectorised with ``torch.func``:

* :func:`sens_exact` (metric ``sens``): column ``j`` of ``J`` is one forward-over-reverse
  Jacobian-vector product ``jvp(g, x, e_j)``; chunks of ``C`` basis vectors go through one
  ``vmap``-ed JVP, and only ``Σ_j J_ij²`` is kept, so memory is ``O(C·M)``, never ``O(n·M)``.
* :func:`sens_discrete_scores` (metric ``sens_discrete``): the paper's discrete
  approximation, central differences of ``g`` along each coordinate, ``2n`` gradient
  evaluations vmapped in chunks (formula in its docstring).
* :func:`sens_probe_estimate` (metric ``sens_probe``): ``K`` Gaussian probes ``v ~ N(0, I_n)``,
  exact directional derivatives ``Jv`` by one JVP each; ``mean_k (Jv_k)_i²`` is an unbiased
  estimate of ``Sens_i²`` with a per-entry standard error.

**Factored weights** (``factored=True``, the default; exact, not an approximation).  The
weight gradient of a ``nn.Linear`` / ``nn.Conv2d`` layer called once is bilinear in the
layer's input ``a`` and output gradient ``δ = ∂L/∂out``: ``∇W = δᵀ a`` (Linear; rows =
batch·positions) or ``δ ⋆ unfold(a)`` (Conv2d).  Its column of ``J`` is therefore
``δ'ᵀ a + δᵀ a'`` with the tangents ``a' = (∂a/∂x)v``, ``δ' = (∂δ/∂x)v``.  The JVP is taken of a
function returning ``(a, δ)`` of those layers (``δ`` as the gradient of a zero tensor added
to the layer output) instead of their weight gradients, and the weight columns are formed
with large matrix products (vmap would otherwise run per-column grouped convolutions).  For
a Linear layer with a single input row (one image) the column norms need no
materialisation at all: ``Σ_j (δ'_j ⊗ a + δ ⊗ a'_j)² = (Σ_j δ'_j²) ⊗ a² + δ² ⊗ (Σ_j a'_j²)
+ 2 (δ ⊗ a) ∘ (Σ_j δ'_j ⊗ a'_j)``, one GEMM per chunk.  ``factored=False`` differentiates
every parameter gradient directly (the reference the tests compare against).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn
from torch.func import functional_call, jvp, vmap
from torch.nn import functional as F

from ..gradient import LOSSES, set_mode
from .base import Context, ScoreResult, metric, model_params

# Transient bytes per vmapped column, in units of the dtype size, per materialised gradient
# entry / leaf-activation entry / unfolded-patch entry (see GradientJacobian.bytes_per_column).
_COST_M = 4
_COST_A = 12
_COST_U = 3
_CPU_BUDGET_MB = 1024
_CUDA_BUDGET_FRACTION = 0.4


@dataclass
class _Tap:
    """A Linear/Conv2d layer whose weight gradient is formed from ``(a, δ)``."""

    module: str              # module name
    weight: str              # parameter name of its weight
    kind: str                # "linear" | "conv2d"
    out_shape: torch.Size
    in_shape: torch.Size

    def rows(self) -> int:
        """Linear: input rows (batch · positions); 1 allows the rank-2 shortcut."""
        return math.prod(self.in_shape[:-1]) if self.kind == "linear" else -1


class GradientJacobian:
    """The client gradient ``g`` as a function of the continuous input, and its Jacobian
    columns ``(∂g/∂x) v`` for batches of directions ``v``.

    * floating ``x`` (images): the input space is ``x`` itself;
    * integer ``x`` (token ids of a text model): the input space is the word-embedding
      output ``E[x]`` (``B × T × H``); a forward hook on ``model.get_input_embeddings()`` adds
      ``δ`` (``x0 = 0``) to it, so everything else -- pooling on ids, masks, the word-embedding
      table's own gradient, which flows through ``E[x]`` -- is that of the client gradient.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy",
                 mode: str = "eval", factored: bool = True):
        set_mode(model, mode)
        try:
            self._loss = LOSSES[loss]
        except KeyError:
            raise ValueError(f"unknown loss {loss!r}; known: {sorted(LOSSES)}") from None
        self.model, self.x, self.y = model, x, y.detach()
        named = model_params(model)
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self._params = {n: p.detach() for n, p in named}
        self._modules = dict(model.named_modules())
        self._setup_input()
        self.taps, self.activations = self._discover(factored)
        tapped = {t.weight for t in self.taps}
        self._const = {n: p for n, p in self._params.items() if n in tapped}
        self._free = {n: p for n, p in self._params.items() if n not in tapped}
        self._grad = torch.func.grad(self._loss_with_taps, argnums=(0, 1), has_aux=True)
        self._primal: tuple | None = None

    # ----------------------------------------------------------------- set-up
    def _setup_input(self) -> None:
        x = self.x
        if x.is_floating_point():
            self.x0 = x.detach()
            self.input_space = "input"
            self._emb = None
            return
        emb = self.model.get_input_embeddings() if hasattr(self.model, "get_input_embeddings") else None
        if emb is None:
            raise ValueError("sensitivity: integer inputs need a model with get_input_embeddings() "
                             "(the derivative is taken w.r.t. the word-embedding vectors)")
        self._emb = emb
        self.x0 = torch.zeros(*x.shape, emb.weight.shape[1], dtype=emb.weight.dtype, device=emb.weight.device)
        self.input_space = "word_embeddings"

    def _discover(self, factored: bool) -> tuple[list[_Tap], int]:
        """One plain forward: count leaf activations, find the layers to factor."""
        calls: dict[str, list] = {}
        total = 0

        def hook(name):
            def fn(mod, inp, out):
                nonlocal total
                for t in (out if isinstance(out, (tuple, list)) else (out,)):
                    if isinstance(t, torch.Tensor):
                        total += t.numel()
                if isinstance(out, torch.Tensor) and inp and isinstance(inp[0], torch.Tensor):
                    calls.setdefault(name, []).append((inp[0].shape, out.shape))
            return fn

        handles = [m.register_forward_hook(hook(n)) for n, m in self._modules.items() if not list(m.children())]
        try:
            with torch.no_grad():
                self._forward(self._params, self.x0)
        finally:
            for h in handles:
                h.remove()
        if not factored:
            return [], total
        owners: dict[int, int] = {}
        for m in self._modules.values():
            for p in m.parameters(recurse=False):
                owners[id(p)] = owners.get(id(p), 0) + 1
        param_name = {id(p): n for n, p in self.model.named_parameters()}
        taps = []
        for name, m in self._modules.items():
            kind = {nn.Linear: "linear", nn.Conv2d: "conv2d"}.get(type(m))
            if kind is None or len(calls.get(name, [])) != 1 or not m.weight.requires_grad:
                continue
            if owners.get(id(m.weight)) != 1 or param_name.get(id(m.weight)) not in self._params:
                continue
            if kind == "conv2d" and (m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str)):
                continue
            (in_shape, out_shape), = calls[name]
            if kind == "conv2d" and len(in_shape) != 4:
                continue
            taps.append(_Tap(name, param_name[id(m.weight)], kind, out_shape, in_shape))
        return taps, total

    # ----------------------------------------------------------------- g
    def _forward(self, params: dict, xp: torch.Tensor) -> torch.Tensor:
        if self._emb is None:
            return functional_call(self.model, params, (xp,))
        handle = self._emb.register_forward_hook(lambda _m, _i, out: out + xp)
        try:
            return functional_call(self.model, params, (self.x,))
        finally:
            handle.remove()

    def _loss_with_taps(self, free: dict, probes: dict, xp: torch.Tensor):
        acts: dict[str, torch.Tensor] = {}
        handles = []
        for t in self.taps:
            def hook(_m, inp, out, t=t):
                acts[t.module] = inp[0]
                return out + probes[t.module]
            handles.append(self._modules[t.module].register_forward_hook(hook))
        try:
            logits = self._forward({**self._const, **free}, xp)
        finally:
            for h in handles:
                h.remove()
        return self._loss(logits, self.y), acts

    def _F(self, xp: torch.Tensor):
        probes = {t.module: torch.zeros(t.out_shape, dtype=self.x0.dtype, device=self.x0.device) for t in self.taps}
        (g_free, deltas), acts = self._grad(self._free, probes, xp)
        return g_free, deltas, acts

    def primal(self):
        if self._primal is None:
            self._primal = tuple(_detach_tree(t) for t in self._F(self.x0))
        return self._primal

    # ----------------------------------------------------------------- sizes
    @property
    def n(self) -> int:
        return self.x0.numel()

    @property
    def m(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def bytes_per_column(self, sum_squares: bool) -> int:
        """Transient memory of one column: ``itemsize · (4·M_mat + 12·A + 3·U)`` with ``M_mat``
        the gradient entries materialised per column (all but single-row Linear weights when
        only sums of squares are needed), ``A`` the leaf activations of one forward and
        ``U`` the unfolded input patches of factored convolutions."""
        shortcut = {t.weight for t in self.taps if sum_squares and t.kind == "linear" and t.rows() == 1}
        m_mat = sum(math.prod(s) for n, s in zip(self.names, self.shapes) if n not in shortcut)
        u = sum(math.prod(self._params[t.weight].shape[1:]) * math.prod(t.out_shape[-2:]) * t.in_shape[0]
                for t in self.taps if t.kind == "conv2d")
        return self.x0.element_size() * (_COST_M * m_mat + _COST_A * self.activations + _COST_U * u)

    # ----------------------------------------------------------------- columns
    def _tangents(self, V: torch.Tensor):
        return vmap(lambda v: jvp(self._F, (self.x0,), (v,))[1])(V)

    def columns(self, V: torch.Tensor) -> list[torch.Tensor]:
        """``(∂g/∂x) v`` for each row ``v`` of ``V`` (``C × x0.shape``): per parameter, ``C × shape``."""
        g_free, deltas, acts = self.primal()
        t_free, t_deltas, t_acts = self._tangents(V)
        taps = {t.weight: t for t in self.taps}
        out = []
        for n in self.names:
            if n in taps:
                t = taps[n]
                out.append(self._weight_column(t, acts[t.module], deltas[t.module], t_acts[t.module],
                                               t_deltas[t.module]))
            else:
                out.append(t_free[n])
        return out

    def sum_squares(self, V: torch.Tensor) -> list[torch.Tensor]:
        """``Σ_rows ((∂g/∂x) v)²`` per parameter, without materialising single-row Linear
        weight columns (rank-2 identity in the module docstring)."""
        g_free, deltas, acts = self.primal()
        t_free, t_deltas, t_acts = self._tangents(V)
        taps = {t.weight: t for t in self.taps}
        out = []
        for n in self.names:
            t = taps.get(n)
            if t is None:
                out.append(t_free[n].square().sum(0))
            elif t.kind == "linear" and t.rows() == 1:
                a, d = acts[t.module].reshape(-1), deltas[t.module].reshape(-1)
                ta = t_acts[t.module].reshape(V.shape[0], -1)
                td = t_deltas[t.module].reshape(V.shape[0], -1)
                s = torch.outer(td.square().sum(0), a.square())
                s += torch.outer(d.square(), ta.square().sum(0))
                s += 2 * torch.outer(d, a) * (td.T @ ta)
                out.append(s)
            else:
                out.append(self._weight_column(t, acts[t.module], deltas[t.module], t_acts[t.module],
                                               t_deltas[t.module]).square().sum(0))
        return out

    def _weight_column(self, t: _Tap, a, d, ta, td) -> torch.Tensor:
        """``δ'ᵀ a + δᵀ a'`` for a batch of tangents (leading dim ``C``): ``C × weight shape``."""
        c = ta.shape[0]
        w = self._params[t.weight]
        if t.kind == "linear":
            a, d = a.reshape(-1, a.shape[-1]), d.reshape(-1, d.shape[-1])
            ta, td = ta.reshape(c, -1, a.shape[-1]), td.reshape(c, -1, d.shape[-1])
            return torch.einsum("cpr,pk->crk", td, a) + torch.einsum("pr,cpk->crk", d, ta)
        m = self._modules[t.module]
        unfold = lambda z: F.unfold(z, m.kernel_size, m.dilation, m.padding, m.stride)  # noqa: E731
        u = unfold(a)                                        # B × K × L
        tu = unfold(ta.flatten(0, 1)).view(c, *u.shape)      # C × B × K × L
        d = d.flatten(2)                                     # B × O × L
        td = td.flatten(3)                                   # C × B × O × L
        col = torch.einsum("cbol,bkl->cok", td, u) + torch.einsum("bol,cbkl->cok", d, tu)
        return col.view(c, *w.shape)

    # ----------------------------------------------------------------- g at other points
    def gradients_at(self, X: torch.Tensor) -> list[torch.Tensor]:
        """``g(x)`` for each row of ``X`` (``C × x0.shape``): per parameter, ``C × shape``."""
        g_free, deltas, acts = vmap(self._F)(X)
        taps = {t.weight: t for t in self.taps}
        out = []
        for n in self.names:
            t = taps.get(n)
            out.append(g_free[n] if t is None else self._weight_grad(t, acts[t.module], deltas[t.module]))
        return out

    def _weight_grad(self, t: _Tap, a, d) -> torch.Tensor:
        """Per-point weight gradients from batched ``(a, δ)``: ``C × weight shape``."""
        c = a.shape[0]
        w = self._params[t.weight]
        if t.kind == "linear":
            return torch.einsum("cpr,cpk->crk", d.reshape(c, -1, d.shape[-1]), a.reshape(c, -1, a.shape[-1]))
        m = self._modules[t.module]
        u = F.unfold(a.flatten(0, 1), m.kernel_size, m.dilation, m.padding, m.stride)
        u = u.view(c, -1, *u.shape[1:])                      # C × B × K × L
        return torch.einsum("cbol,cbkl->cok", d.flatten(3), u).view(c, *w.shape)

    def gradient(self) -> dict[str, torch.Tensor]:
        """``g(x0)``, the client gradient, recomputed (a consistency check)."""
        g = self.gradients_at(self.x0.unsqueeze(0))
        return {n: t[0] for n, t in zip(self.names, g)}

    def describe(self) -> dict:
        return {"input_space": self.input_space, "input_dim": self.n,
                "factored_layers": [t.module for t in self.taps],
                "rank2_layers": [t.module for t in self.taps if t.kind == "linear" and t.rows() == 1]}


def _detach_tree(d: dict) -> dict:
    return {k: v.detach() for k, v in d.items()}


# --------------------------------------------------------------------------- chunks

def default_chunk_size(gj: GradientJacobian, memory_budget_mb: float | None = None, *,
                       sum_squares: bool = False, columns_per_item: int = 1, limit: int | None = None
                       ) -> tuple[int, dict]:
    """Directions per vmapped call so that the transient memory stays within a budget:
    ``memory_budget_mb`` if given, else 1 GiB on the CPU and 40 % of the free memory on
    CUDA, divided by :meth:`GradientJacobian.bytes_per_column`.  Result in ``[1, limit]``."""
    device = gj.x0.device
    if memory_budget_mb is None:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            budget = _CUDA_BUDGET_FRACTION * free
        else:
            budget = _CPU_BUDGET_MB * 2**20
    else:
        budget = float(memory_budget_mb) * 2**20
    per_col = gj.bytes_per_column(sum_squares) * columns_per_item
    chunk = int(max(1, min(limit or gj.n, budget // max(per_col, 1))))
    return chunk, {"memory_budget_bytes": int(budget), "estimated_bytes_per_column": int(per_col)}


def _resolve_chunk(gj: GradientJacobian, chunk_size: int | None, memory_budget_mb: float | None,
                   **kw) -> tuple[int, dict]:
    if chunk_size is None:
        return default_chunk_size(gj, memory_budget_mb, **kw)
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, not {chunk_size}")
    return min(int(chunk_size), kw.get("limit") or gj.n), {"memory_budget_bytes": None}


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _basis(gj: GradientJacobian, start: int, stop: int, scale: float = 1.0) -> torch.Tensor:
    """``scale · e_j`` for ``j in [start, stop)``, shaped ``(stop-start, *x0.shape)``."""
    c = stop - start
    v = torch.zeros(c, gj.n, dtype=gj.x0.dtype, device=gj.x0.device)
    v[torch.arange(c, device=v.device), torch.arange(start, stop, device=v.device)] = scale
    return v.view(c, *gj.x0.shape)


# --------------------------------------------------------------------------- exact

def sens_exact(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str = "cross_entropy",
               mode: str = "eval", chunk_size: int | None = None, memory_budget_mb: float | None = None,
               factored: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """Exact ``Sens_i = sqrt(Σ_j (∂g_i/∂x_j)²)`` in the model's dtype, and an info dict.

    The ``n`` Jacobian columns are computed ``chunk_size`` at a time as vmapped
    forward-over-reverse JVPs along basis vectors (the primal is evaluated once per chunk,
    not per column); only the running sum of squares (one tensor per parameter) is kept."""
    gj = GradientJacobian(model, x, y, loss, mode, factored)
    chunk, mem = _resolve_chunk(gj, chunk_size, memory_budget_mb, sum_squares=True)
    acc = [torch.zeros(s, dtype=gj.x0.dtype, device=gj.x0.device) for s in gj.shapes]
    for start, stop in _chunks(gj.n, chunk):
        for a, s in zip(acc, gj.sum_squares(_basis(gj, start, stop))):
            a.add_(s)
    sens = {n: a.clamp_(min=0).sqrt_() for n, a in zip(gj.names, acc)}
    info = {"formula": "Sens_i = sqrt(sum_j (d g_i / d x_j)^2), exact: forward-over-reverse JVP per input "
                       "coordinate, vmapped in chunks",
            **gj.describe(), "chunk_size": chunk, "jvp_columns": gj.n, **mem}
    return sens, info


# --------------------------------------------------------------------------- discrete

def sens_discrete_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: float = 1.0,
                         aggregate: str = "mean_abs", loss: str = "cross_entropy", mode: str = "eval",
                         chunk_size: int | None = None, memory_budget_mb: float | None = None,
                         factored: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    r"""The paper's discrete approximation of Sens (section 5.3).

    With ``h = step`` and ``D_ij = (g_i(x + h e_j) − g_i(x − h e_j)) / (2h)`` (the paper's
    ``(g(x+e_j) − g(x−e_j))/2`` at its unit step ``h = 1``):

    * ``aggregate='mean_abs'`` (default): ``score_i = (1/n) Σ_j |D_ij|`` -- "the mean over
      all dimensions"; the absolute value keeps opposite-signed directions from cancelling;
    * ``aggregate='rms'``: ``score_i = sqrt((1/n) Σ_j D_ij²)``, which tends to
      ``Sens_i / sqrt(n)`` as ``h → 0`` (same ranking as the exact Sens).

    The ``2n`` perturbed gradients are evaluated ``2·chunk`` at a time through one vmap.
    """
    if aggregate not in ("mean_abs", "rms"):
        raise ValueError(f"sens_discrete: aggregate must be 'mean_abs' or 'rms', not {aggregate!r}")
    h = float(step)
    if not h > 0:
        raise ValueError(f"sens_discrete: step must be > 0, not {step}")
    gj = GradientJacobian(model, x, y, loss, mode, factored)
    chunk, mem = _resolve_chunk(gj, chunk_size, memory_budget_mb, columns_per_item=2)
    acc = [torch.zeros(s, dtype=gj.x0.dtype, device=gj.x0.device) for s in gj.shapes]
    for start, stop in _chunks(gj.n, chunk):
        e = _basis(gj, start, stop, h)
        c = stop - start
        for a, g in zip(acc, gj.gradients_at(torch.cat([gj.x0 + e, gj.x0 - e]))):
            d = (g[:c] - g[c:]) / (2 * h)
            a.add_(d.abs().sum(0) if aggregate == "mean_abs" else d.square().sum(0))
    if aggregate == "mean_abs":
        scores = {n: a / gj.n for n, a in zip(gj.names, acc)}
        formula = "score_i = (1/n) sum_j |g_i(x + h e_j) - g_i(x - h e_j)| / (2h)"
    else:
        scores = {n: (a / gj.n).sqrt() for n, a in zip(gj.names, acc)}
        formula = "score_i = sqrt((1/n) sum_j ((g_i(x + h e_j) - g_i(x - h e_j)) / (2h))^2)"
    info = {"formula": formula, "step": h, "aggregate": aggregate, **gj.describe(), "chunk_size": chunk,
            "gradient_evaluations": 2 * gj.n, **mem}
    return scores, info


# --------------------------------------------------------------------------- probes

def sens_probe_estimate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, probes: int = 64, seed: int,
                        loss: str = "cross_entropy", mode: str = "eval", chunk_size: int | None = None,
                        memory_budget_mb: float | None = None, factored: bool = True
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    r"""Randomised estimate of ``Sens_i²`` with its standard error.

    ``v_k ~ N(0, I_n)``, ``k = 1..K``, drawn on the CPU from ``seed`` (device-independent);
    ``u_k = J v_k`` exactly (one JVP each).  Since ``E[(J v)_i²] = Σ_j J_ij² = Sens_i²``,

    * ``est_i = (1/K) Σ_k u_{k,i}²`` is unbiased for ``Sens_i²``;
    * ``stderr_i = std_k(u_{k,i}²) / sqrt(K)`` (sample std, ``K − 1`` dof) is its standard
      error.  As ``u_{k,i} ~ N(0, Sens_i²)``, the relative error of ``est_i`` is
      ``sqrt(2/K)`` in expectation (about ``1/sqrt(2K)`` on ``Sens_i = sqrt(est_i)``).

    Returns ``(est, stderr, info)``; ``est``/``stderr`` per parameter name, in float64 on
    CPU/CUDA (the fourth powers underflow float32).
    """
    k = int(probes)
    if k < 2:
        raise ValueError(f"sens_probe: probes must be >= 2 (the stated error needs 2), not {probes}")
    gj = GradientJacobian(model, x, y, loss, mode, factored)
    chunk, mem = _resolve_chunk(gj, chunk_size, memory_budget_mb, limit=k)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed) % 2**63)
    dirs = torch.randn(k, *gj.x0.shape, generator=gen, dtype=torch.float64)
    acc_dtype = torch.float64 if gj.x0.device.type in ("cpu", "cuda") else gj.x0.dtype
    s1 = [torch.zeros(s, dtype=acc_dtype, device=gj.x0.device) for s in gj.shapes]
    s2 = [torch.zeros(s, dtype=acc_dtype, device=gj.x0.device) for s in gj.shapes]
    for start, stop in _chunks(k, chunk):
        v = dirs[start:stop].to(device=gj.x0.device, dtype=gj.x0.dtype)
        for a1, a2, t in zip(s1, s2, gj.columns(v)):
            u2 = t.to(acc_dtype).square()
            a1.add_(u2.sum(0))
            a2.add_(u2.square().sum(0))
    est, err = {}, {}
    for n, a1, a2 in zip(gj.names, s1, s2):
        mean = a1 / k
        var = ((a2 - k * mean.square()) / (k - 1)).clamp_(min=0)
        est[n], err[n] = mean, (var / k).sqrt()
    flat_est = torch.cat([t.reshape(-1) for t in est.values()])
    flat_err = torch.cat([t.reshape(-1) for t in err.values()])
    pos = flat_est > 0
    rel = (flat_err[pos] / flat_est[pos]).float()
    info = {"formula": "Sens_i^2 ~ (1/K) sum_k ((dg/dx) v_k)_i^2, v_k ~ N(0, I_n) (unbiased); score_i = sqrt of it",
            "probes": k, **gj.describe(), "chunk_size": chunk, "jvp_columns": k, **mem,
            "stated_error": {
                "per_entry": "stderr_i = std_k(((dg/dx) v_k)_i^2) / sqrt(K), standard error of the Sens^2 estimate",
                "expected_relative_stderr_sens_sq": math.sqrt(2.0 / k),
                "expected_relative_stderr_sens": math.sqrt(1.0 / (2 * k)),
                "median_relative_stderr_sens_sq": _quantile(rel, 0.5),
                "p90_relative_stderr_sens_sq": _quantile(rel, 0.9),
                "entries_with_zero_estimate": int((~pos).sum()),
            }}
    return est, err, info


def _quantile(t: torch.Tensor, q: float) -> float | None:
    if t.numel() == 0:
        return None
    kth = min(t.numel(), max(1, int(math.ceil(q * t.numel()))))
    return float(t.reshape(-1).kthvalue(kth).values)


# --------------------------------------------------------------------------- registry

@metric("sens", "exact input sensitivity ||dg_i/dx||_2 (paper: Sens)")
def _sens(ctx: Context, *, chunk_size: int | None = None, memory_budget_mb: float | None = None,
          factored: bool = True) -> ScoreResult:
    s, info = sens_exact(ctx.model, ctx.x, ctx.y, loss=ctx.loss, mode=ctx.mode, chunk_size=chunk_size,
                         memory_budget_mb=memory_budget_mb, factored=factored)
    return ScoreResult(s, info)


@metric("sens_discrete", "central-difference approximation of Sens (paper: Sens (Discrete))")
def _sens_discrete(ctx: Context, *, step: float = 1.0, aggregate: str = "mean_abs", chunk_size: int | None = None,
                   memory_budget_mb: float | None = None, factored: bool = True) -> ScoreResult:
    s, info = sens_discrete_scores(ctx.model, ctx.x, ctx.y, step=step, aggregate=aggregate, loss=ctx.loss,
                                   mode=ctx.mode, chunk_size=chunk_size, memory_budget_mb=memory_budget_mb,
                                   factored=factored)
    return ScoreResult(s, info)


@metric("sens_probe", "randomised (Gaussian-probe) estimate of Sens with a stated error")
def _sens_probe(ctx: Context, *, probes: int = 64, chunk_size: int | None = None,
                memory_budget_mb: float | None = None, factored: bool = True) -> ScoreResult:
    est, _, info = sens_probe_estimate(ctx.model, ctx.x, ctx.y, probes=probes, seed=ctx.seed, loss=ctx.loss,
                                       mode=ctx.mode, chunk_size=chunk_size, memory_budget_mb=memory_budget_mb,
                                       factored=factored)
    return ScoreResult({n: t.sqrt() for n, t in est.items()}, info)
