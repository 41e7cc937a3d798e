r"""Input sensitivity of the gradient: ``Sens_i = ‖∂g_i/∂x‖₂`` (paper, section 4.2).

``g(x) = ∇_θ L(f(x; θ), y)`` is the client gradient as a function of the model input ``x``
(the normalised image; for a text model, the input embeddings: either the model takes a
float ``inputs_embeds`` tensor as ``x`` directly, or it is fed token ids and the derivative
is taken w.r.t. the word-embedding vectors, see :class:`GradientJacobian`).  ``J = ∂g/∂x`` is
the ``M × n`` Jacobian (``M`` gradient entries, ``n`` input coordinates; for a batch, ``x`` is
the whole batch) and ``Sens_i² = Σ_j J_ij²`` is the squared norm of row ``i``.  This is the
derivative w.r.t. the *input*, the paper's ``∇_x ∇_θ L``; the derivative w.r.t. a soft label
(FedML-HE's released code) equals the gradient itself for one sample and would make Sens
coincide with Grad (``reference/selective_he.md`` §1.3).

Three estimators, all device-agnostic and vectorised with ``torch.func``:

* :func:`sens_exact` (metric ``sens``): column ``j`` of ``J`` is one forward-over-reverse
  Jacobian-vector product ``jvp(g, x, e_j)``; chunks of ``C`` basis vectors go through one
  ``vmap``-ed JVP and only ``Σ_j J_ij²`` is kept, so memory is ``O(C·M)``, never ``O(n·M)``.
  Cost: ``n`` JVPs (``n = 3072`` for a CIFAR image) instead of ``M`` reverse passes (one
  ``autograd.grad`` per gradient entry, ``M = 88,648`` for LeNet, 2,202,660 for the CNN).
* :func:`sens_discrete_scores` (metric ``sens_discrete``): the paper's discrete
  approximation, central differences of ``g`` along each coordinate, ``2n`` gradient
  evaluations vmapped in chunks, each pair's difference formed in one product per weight
  (:meth:`GradientJacobian.differences`; formula in its docstring).
* :func:`sens_probe_estimate` (metric ``sens_probe``): ``K`` Gaussian probes ``v ~ N(0, I_n)``,
  exact directional derivatives ``Jv`` by one JVP each; ``(1/K) Σ_k (Jv_k)_i²`` is an unbiased
  estimate of ``Sens_i²``, distributed exactly as ``Sens_i² χ²_K / K`` (stated error there).

**Factored weights** (``factored=True``, the default; exact, not an approximation).  The
weight gradient of a ``nn.Linear`` / ``nn.Conv2d`` layer called once is bilinear in the
layer's input ``a`` and output gradient ``δ = ∂L/∂out``: ``∇W = Σ_p δ_p a_pᵀ`` (Linear; ``p``
over batch·positions) or ``∇W[o,i,u,v] = Σ_{b,l} δ[b,o,l] a_pad[b,i,s·l+d·(u,v)]`` (Conv2d,
stride ``s``, dilation ``d``).  Its column of ``J`` is therefore ``∇W(δ', a) + ∇W(δ, a')``
with the tangents ``a' = (∂a/∂x)v``, ``δ' = (∂δ/∂x)v``.  The JVP is taken of a function
returning ``(a, δ)`` of those layers (``δ`` as the gradient of a zero tensor added to the
layer output) instead of their weight gradients, and the weight columns are formed with
large dense products instead of per-column weight gradients:

* Conv2d: ``∇W(δ', a)`` is one GEMM of the tangents with the patches ``unfold(a)`` (computed
  once); ``∇W(δ, a')`` is one convolution of the tangents ``a'`` (the directions as the batch)
  with ``δ`` as the kernel (stride and dilation swap roles), the same identity that
  computes weight gradients in cuDNN/oneDNN.
* Linear with a single input row (one image): the column norms need no materialisation
  at all: ``Σ_j (δ'_j ⊗ a + δ ⊗ a'_j)² = (Σ_j δ'_j²) ⊗ a² + δ² ⊗ (Σ_j a'_j²) + 2 (δ ⊗ a) ∘
  (Σ_j δ'_j ⊗ a'_j)``, one GEMM per chunk.

``factored=False`` differentiates every parameter gradient directly (the reference the
tests compare against).

Length: one quantity and its three estimators (exact, discrete, probes), which share the
Jacobian engine (:class:`GradientJacobian`, half the file) that nothing else uses; each
estimator is a page beside the engine it relies on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn
from torch.func import functional_call, jvp, vmap
from torch.nn import functional as F

from ..gradient import LOSSES, set_mode
from .base import Context, ScoreResult, boolean, int_at_least, metric, model_params, one_of, positive_number

# Transient bytes per vmapped column, in units of the dtype size, per materialised gradient
# entry / leaf-activation entry (see GradientJacobian.bytes_per_column).  Conservative: the
# measured CPU RSS growth of one chunk is about a third of the estimate on LeNet (0.19 vs
# 0.71 MB per column) and the CNN (1.3 vs 3.8 MB per column).
_COST_M = 4
_COST_A = 12
_CPU_BUDGET_MB = 1024
_CPU_MAX_CHUNK = 256          # larger vmapped chunks are not faster on a CPU (measured: 64-256 alike)
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


def conv2d_weight_grads(a: torch.Tensor, d: torch.Tensor, m: nn.Conv2d) -> torch.Tensor:
    """Weight gradients of ``m`` (``groups = 1``, zero padding) for ``N`` (input, output-gradient)
    pairs at once: ``a`` is ``Na × B × I × H × W``, ``d`` is ``Nd × B × O × Ho × Wo`` with ``Na``,
    ``Nd`` equal or one of them 1 (shared by all); returns ``N × O × I × kh × kw``.

    ``∇W[o,i,u,v] = Σ_{b,h,w} d[b,o,h,w] · a_pad[b,i, s_h·h + dl_h·u, s_w·w + dl_w·v]`` is a
    cross-correlation of ``a`` (channels ``i`` as the batch) with the kernels ``d[·,o]``, with
    the module's stride as dilation and its dilation as stride; the output is cropped to the
    kernel size (a stride that does not divide evenly leaves unused rows)."""
    kh, kw = m.kernel_size
    na, b, ci, h, w = a.shape
    nd, _, co, ho, wo = d.shape
    kw_ = dict(stride=m.dilation, padding=m.padding, dilation=m.stride)
    if na == nd:                      # a different pair per n: one grouped convolution
        n = na
        out = F.conv2d(a.permute(2, 0, 1, 3, 4).reshape(ci, n * b, h, w),
                       d.permute(0, 2, 1, 3, 4).reshape(n * co, b, ho, wo), groups=n, **kw_)
        return out[..., :kh, :kw].reshape(ci, n, co, kh, kw).permute(1, 2, 0, 3, 4)
    if nd == 1:                       # shared d: the N inputs are the batch
        n = na
        out = F.conv2d(a.permute(0, 2, 1, 3, 4).reshape(n * ci, b, h, w), d[0].transpose(0, 1), **kw_)
        return out[..., :kh, :kw].reshape(n, ci, co, kh, kw).permute(0, 2, 1, 3, 4)
    if na != 1:
        raise ValueError(f"conv2d_weight_grads: {na} inputs and {nd} output gradients")
    n = nd                            # shared a: the N kernels are output channels
    out = F.conv2d(a[0].transpose(0, 1), d.permute(0, 2, 1, 3, 4).reshape(n * co, b, ho, wo), **kw_)
    return out[..., :kh, :kw].reshape(ci, n, co, kh, kw).permute(1, 2, 0, 3, 4)


class GradientJacobian:
    """The client gradient ``g`` as a function of the continuous input, and its Jacobian
    columns ``(∂g/∂x) v`` for batches of directions ``v``.

    * floating ``x`` (images, or the ``inputs_embeds`` of a wrapped text model whose
      ``forward`` takes them): the input space is ``x`` itself;
    * integer ``x`` (token ids of a text model): the input space is the word-embedding
      output ``E[x]`` (``B × T × H``); a forward hook on ``model.get_input_embeddings()`` adds
      ``δ`` (``x0 = 0``) to it, so everything else -- pooling on ids, masks, the word-embedding
      table's own gradient, which flows through ``E[x]`` -- is that of the client gradient.

    Parameters the forward does not use get a zero gradient (and a zero Jacobian row).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy",
                 mode: str = "eval", factored: bool = True):
        set_mode(model, mode)
        random_layers = [n for n, m in model.named_modules()
                         if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0]
        if random_layers:
            raise ValueError(f"sensitivity: the model is in {mode!r} mode with active dropout ({random_layers[:3]}): "
                             "the gradient is random there and has no Jacobian; use gradient.model_mode: eval")
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
        self._patches: dict[str, torch.Tensor] = {}

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
        """``(free-parameter gradients, δ per tap, a per tap)`` at ``x0`` (computed once)."""
        if self._primal is None:
            self._primal = tuple(_detach_tree(t) for t in self._F(self.x0))
        return self._primal

    def _patch_matrix(self, t: _Tap, a: torch.Tensor) -> torch.Tensor:
        """``unfold(a)`` of a conv tap as a ``(B·L) × K`` matrix (computed once)."""
        if t.module not in self._patches:
            m = self._modules[t.module]
            u = F.unfold(a, m.kernel_size, m.dilation, m.padding, m.stride)     # B × K × L
            self._patches[t.module] = u.transpose(1, 2).reshape(-1, u.shape[1])
        return self._patches[t.module]

    # ----------------------------------------------------------------- sizes
    @property
    def n(self) -> int:
        return self.x0.numel()

    @property
    def m(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def bytes_per_column(self, sum_squares: bool) -> int:
        """Transient memory of one column: ``itemsize · (4·M_mat + 12·A)`` with ``M_mat`` the
        gradient entries materialised per column (all but single-row Linear weights when
        only sums of squares are needed) and ``A`` the leaf activations of one forward."""
        shortcut = {t.weight for t in self.taps if sum_squares and t.kind == "linear" and t.rows() == 1}
        m_mat = sum(math.prod(s) for n, s in zip(self.names, self.shapes) if n not in shortcut)
        return self.x0.element_size() * (_COST_M * m_mat + _COST_A * self.activations)

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
        """``∇W(δ', a) + ∇W(δ, a')`` for a batch of tangents (leading dim ``C``): ``C × weight shape``."""
        c = ta.shape[0]
        w = self._params[t.weight]
        if t.kind == "linear":
            a, d = a.reshape(-1, a.shape[-1]), d.reshape(-1, d.shape[-1])
            ta, td = ta.reshape(c, -1, a.shape[-1]), td.reshape(c, -1, d.shape[-1])
            return torch.einsum("cpr,pk->crk", td, a) + torch.einsum("pr,cpk->crk", d, ta)
        m = self._modules[t.module]
        u = self._patch_matrix(t, a)                                        # (B·L) × K
        co = w.shape[0]
        td = td.reshape(c, d.shape[0], co, -1).transpose(1, 2).reshape(c * co, -1)   # (C·O) × (B·L)
        first = (td @ u).view(c, *w.shape)                                  # ∇W(δ', a)
        second = conv2d_weight_grads(ta, d.unsqueeze(0), m)                 # ∇W(δ, a')
        return first + second

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

    def differences(self, X: torch.Tensor, Y: torch.Tensor, reduce: str | None = None) -> list[torch.Tensor]:
        """``g(x) − g(y)`` for each pair of rows of ``X`` and ``Y``: per parameter, ``C × shape``;
        with ``reduce`` (``'l1'``, ``'sum'``, ``'sq'``) its ``Σ_pairs |·|``, ``Σ_pairs ·`` or
        ``Σ_pairs ·²`` (``shape``).

        A factored weight's difference ``∇W(δ_x, a_x) − ∇W(δ_y, a_y)`` is the weight gradient
        of one "batch" holding both points, ``(a_x, δ_x)`` and ``(a_y, −δ_y)`` (it is bilinear and
        sums over the batch), so it is formed in one product without materialising either
        gradient.  Reduced Linear weights are accumulated pair by pair (one matrix product into
        a reused buffer), which keeps the large fully-connected weights in cache."""
        ops = {None: None, "l1": torch.abs, "sum": lambda t: t, "sq": torch.square}
        if reduce not in ops:
            raise ValueError(f"differences: reduce must be one of {list(ops)}, not {reduce!r}")
        op = ops[reduce]
        c = X.shape[0]
        g_free, deltas, acts = vmap(self._F)(torch.cat([X, Y]))
        taps = {t.weight: t for t in self.taps}
        out = []
        for n in self.names:
            t = taps.get(n)
            if t is None:
                diff = g_free[n][:c] - g_free[n][c:]
            else:
                a = torch.cat([acts[t.module][:c], acts[t.module][c:]], 1)
                d = torch.cat([deltas[t.module][:c], -deltas[t.module][c:]], 1)
                if reduce is not None and t.kind == "linear":
                    a, d = a.reshape(c, -1, a.shape[-1]), d.reshape(c, -1, d.shape[-1])
                    acc = torch.zeros(d.shape[-1], a.shape[-1], dtype=a.dtype, device=a.device)
                    buf = torch.empty_like(acc)
                    for i in range(c):
                        torch.mm(d[i].T, a[i], out=buf)
                        acc.add_(op(buf))
                    out.append(acc)
                    continue
                diff = self._weight_grad(t, a, d)
            out.append(diff if reduce is None else op(diff).sum(0))
        return out

    def _weight_grad(self, t: _Tap, a, d) -> torch.Tensor:
        """Per-point weight gradients from batched ``(a, δ)``: ``C × weight shape``."""
        c = a.shape[0]
        if t.kind == "linear":
            return torch.einsum("cpr,cpk->crk", d.reshape(c, -1, d.shape[-1]), a.reshape(c, -1, a.shape[-1]))
        return conv2d_weight_grads(a, d, self._modules[t.module])

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
    ``memory_budget_mb`` if given, else 1 GiB on the CPU (and at most 256 directions: larger
    chunks are not faster there) and 40 % of the free memory on CUDA, divided by
    :meth:`GradientJacobian.bytes_per_column`.  Result in ``[1, limit]``."""
    device = gj.x0.device
    cap = limit or gj.n
    if memory_budget_mb is None:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            budget = _CUDA_BUDGET_FRACTION * free
        else:
            budget = _CPU_BUDGET_MB * 2**20
            cap = min(cap, max(1, _CPU_MAX_CHUNK // columns_per_item))
    else:
        budget = float(memory_budget_mb) * 2**20
    per_col = gj.bytes_per_column(sum_squares) * columns_per_item
    chunk = int(max(1, min(cap, budget // max(per_col, 1))))
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
    forward-over-reverse JVPs along basis vectors (the primal is evaluated once, not per
    column or chunk); only the running sum of squares (one tensor per parameter) is kept."""
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

DISCRETE_AGGREGATES = ("mean_abs", "abs_mean", "rms")


def sens_discrete_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step: float = 1.0,
                         aggregate: str = "mean_abs", loss: str = "cross_entropy", mode: str = "eval",
                         chunk_size: int | None = None, memory_budget_mb: float | None = None,
                         factored: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    r"""The paper's discrete approximation of Sens (section 5.3).

    The paper computes ``(g(x + e_j) − g(x − e_j)) / 2`` "for each coordinate direction j, and
    takes the mean over all dimensions".  With ``h = step`` (default 1, the paper's unit
    vector ``e_j`` in the model's input units, i.e. the normalised image) and
    ``D_ij = (g_i(x + h e_j) − g_i(x − h e_j)) / (2h)``:

    * ``aggregate='mean_abs'`` (default): ``score_i = (1/n) Σ_j |D_ij|``, the mean over all
      input dimensions of the magnitude of the central difference (the magnitude keeps
      directions of opposite sign from cancelling; Sens is a norm over the same index);
    * ``aggregate='abs_mean'``: ``score_i = |(1/n) Σ_j D_ij|``, the literal reading (signed
      mean, then the magnitude every metric ranks by);
    * ``aggregate='rms'``: ``score_i = sqrt((1/n) Σ_j D_ij²)``, which tends to
      ``Sens_i / sqrt(n)`` as ``h → 0`` (same ranking as the exact Sens).

    The ``2n`` perturbed gradients are evaluated ``2·chunk`` at a time through one vmap and
    reduced over the chunk without materialising the per-point gradients of Linear weights.
    """
    if aggregate not in DISCRETE_AGGREGATES:
        raise ValueError(f"sens_discrete: aggregate must be one of {DISCRETE_AGGREGATES}, not {aggregate!r}")
    h = float(step)
    if not h > 0:
        raise ValueError(f"sens_discrete: step must be > 0, not {step}")
    gj = GradientJacobian(model, x, y, loss, mode, factored)
    chunk, mem = _resolve_chunk(gj, chunk_size, memory_budget_mb, columns_per_item=2)
    acc = [torch.zeros(s, dtype=gj.x0.dtype, device=gj.x0.device) for s in gj.shapes]
    for start, stop in _chunks(gj.n, chunk):
        e = _basis(gj, start, stop, h)
        reduce = {"mean_abs": "l1", "abs_mean": "sum", "rms": "sq"}[aggregate]
        scale = 1 / (2 * h) ** (2 if aggregate == "rms" else 1)
        for a, d in zip(acc, gj.differences(gj.x0 + e, gj.x0 - e, reduce)):   # Σ_j over the chunk of (2h·D_ij)
            a.add_(d, alpha=scale)
    formula = {
        "mean_abs": "score_i = (1/n) sum_j |g_i(x + h e_j) - g_i(x - h e_j)| / (2h)",
        "abs_mean": "score_i = |(1/n) sum_j (g_i(x + h e_j) - g_i(x - h e_j)) / (2h)|",
        "rms": "score_i = sqrt((1/n) sum_j ((g_i(x + h e_j) - g_i(x - h e_j)) / (2h))^2)",
    }[aggregate]
    scores = {}
    for n, a in zip(gj.names, acc):
        a = a / gj.n
        scores[n] = a.abs() if aggregate == "abs_mean" else (a.sqrt() if aggregate == "rms" else a)
    info = {"formula": formula, "step": h, "aggregate": aggregate, **gj.describe(), "chunk_size": chunk,
            "gradient_evaluations": 2 * gj.n, **mem}
    return scores, info


# --------------------------------------------------------------------------- probes

def chi2_quantile(p: float, k: int) -> float:
    """The ``p``-quantile of χ²_k: bisection on its CDF ``P(k/2, q/2)`` (the regularised lower
    incomplete gamma function, ``torch.special.gammainc``) in float64, to machine precision
    (no SciPy import inside the timed metric)."""
    if not 0 < p < 1 or k < 1:
        raise ValueError(f"chi2_quantile: need 0 < p < 1 and k >= 1, not p={p}, k={k}")
    a = torch.tensor(k / 2, dtype=torch.float64)
    lo, hi = 0.0, 10.0 * k + 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if float(torch.special.gammainc(a, torch.tensor(mid / 2, dtype=torch.float64))) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return (lo + hi) / 2


def probe_interval_factors(probes: int, level: float = 0.95) -> tuple[float, float]:
    """``(lo, hi)`` with ``P(lo·est ≤ Sens² ≤ hi·est) = level`` for every entry: since
    ``K·est/Sens² ~ χ²_K``, ``lo = K/χ²_K((1+level)/2)`` and ``hi = K/χ²_K((1−level)/2)``."""
    k = int(probes)
    return k / chi2_quantile((1 + level) / 2, k), k / chi2_quantile((1 - level) / 2, k)


def sens_probe_estimate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, probes: int = 64, seed: int,
                        loss: str = "cross_entropy", mode: str = "eval", chunk_size: int | None = None,
                        memory_budget_mb: float | None = None, factored: bool = True
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    r"""Randomised estimate of ``Sens_i²`` with its standard error.

    ``v_k ~ N(0, I_n)``, ``k = 1..K``, drawn on the CPU in float64 from ``seed`` (the same
    directions on every device); ``u_k = J v_k`` exactly (one JVP each).  Each ``u_{k,i} =
    Σ_j J_ij v_{k,j}`` is exactly ``N(0, Sens_i²)`` (a linear map of a Gaussian), so

    * ``est_i = (1/K) Σ_k u_{k,i}²`` is unbiased for ``Sens_i²`` and ``K·est_i/Sens_i² ~ χ²_K``:
      its standard error is ``Sens_i² · sqrt(2/K)`` (relative ``sqrt(2/K)``, 0.177 at
      ``K = 64``; about half that on ``Sens_i = sqrt(est_i)``);
    * the stated per-entry error is ``stderr_i = est_i · sqrt(2/(K+2))``, the square root of
      an unbiased estimate of that variance (``E[est²] = Sens⁴ (1 + 2/K)``);
    * a 95 % interval for ``Sens_i²`` is ``[lo·est_i, hi·est_i]`` with the χ²_K factors of
      :func:`probe_interval_factors` (in ``info``).

    The estimates of different entries share the probes and are correlated; the sum over
    entries ``Σ_i est_i = (1/K) Σ_k ‖J v_k‖²`` is unbiased for ``‖J‖_F²`` with variance
    ``2 ‖JᵀJ‖_F² / K``.  Returns ``(est, stderr, info)``, per parameter name, in the model's
    dtype.
    """
    k = int(probes)
    if k < 1:
        raise ValueError(f"sens_probe: probes must be >= 1, not {probes}")
    gj = GradientJacobian(model, x, y, loss, mode, factored)
    chunk, mem = _resolve_chunk(gj, chunk_size, memory_budget_mb, sum_squares=True, limit=k)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed) % 2**63)
    dirs = torch.randn(k, *gj.x0.shape, generator=gen, dtype=torch.float64)
    acc = [torch.zeros(s, dtype=gj.x0.dtype, device=gj.x0.device) for s in gj.shapes]
    for start, stop in _chunks(k, chunk):
        v = dirs[start:stop].to(device=gj.x0.device, dtype=gj.x0.dtype)
        for a, s in zip(acc, gj.sum_squares(v)):
            a.add_(s)
    rel = math.sqrt(2.0 / (k + 2))
    est = {n: (a / k).clamp_(min=0) for n, a in zip(gj.names, acc)}
    err = {n: e * rel for n, e in est.items()}
    lo, hi = probe_interval_factors(k)
    info = {"formula": "Sens_i^2 ~ (1/K) sum_k ((dg/dx) v_k)_i^2, v_k ~ N(0, I_n) (unbiased); score_i = sqrt of it",
            "probes": k, **gj.describe(), "chunk_size": chunk, "jvp_columns": k, **mem,
            "stated_error": {
                "distribution": "K est_i / Sens_i^2 ~ chi^2_K (exact: (dg/dx) v is Gaussian)",
                "per_entry": "stderr_i = est_i * sqrt(2/(K+2)), standard error of the Sens_i^2 estimate",
                "relative_stderr_sens_sq": math.sqrt(2.0 / k),
                "relative_stderr_sens_approx": math.sqrt(1.0 / (2 * k)),
                "ci95_factors_sens_sq": [lo, hi],
            }}
    return est, err, info


# --------------------------------------------------------------------------- registry

_COMMON_CHECKS = {"chunk_size": int_at_least(1, optional=True),
                  "memory_budget_mb": positive_number(optional=True), "factored": boolean}


@metric("sens", "exact input sensitivity ||dg_i/dx||_2 (paper: Sens)", checks=_COMMON_CHECKS)
def _sens(ctx: Context, *, chunk_size: int | None = None, memory_budget_mb: float | None = None,
          factored: bool = True) -> ScoreResult:
    s, info = sens_exact(ctx.model, ctx.x, ctx.y, loss=ctx.loss, mode=ctx.mode, chunk_size=chunk_size,
                         memory_budget_mb=memory_budget_mb, factored=factored)
    return ScoreResult(s, info)


@metric("sens_discrete", "central-difference approximation of Sens (paper: Sens (Discrete))",
        checks={**_COMMON_CHECKS, "step": positive_number(), "aggregate": one_of(*DISCRETE_AGGREGATES)})
def _sens_discrete(ctx: Context, *, step: float = 1.0, aggregate: str = "mean_abs", chunk_size: int | None = None,
                   memory_budget_mb: float | None = None, factored: bool = True) -> ScoreResult:
    s, info = sens_discrete_scores(ctx.model, ctx.x, ctx.y, step=step, aggregate=aggregate, loss=ctx.loss,
                                   mode=ctx.mode, chunk_size=chunk_size, memory_budget_mb=memory_budget_mb,
                                   factored=factored)
    return ScoreResult(s, info)


@metric("sens_probe", "randomised (Gaussian-probe) estimate of Sens with a stated error",
        checks={**_COMMON_CHECKS, "probes": int_at_least(1)})
def _sens_probe(ctx: Context, *, probes: int = 64, chunk_size: int | None = None,
                memory_budget_mb: float | None = None, factored: bool = True) -> ScoreResult:
    est, _, info = sens_probe_estimate(ctx.model, ctx.x, ctx.y, probes=probes, seed=ctx.seed, loss=ctx.loss,
                                       mode=ctx.mode, chunk_size=chunk_size, memory_budget_mb=memory_budget_mb,
                                       factored=factored)
    return ScoreResult({n: t.sqrt() for n, t in est.items()}, info)
