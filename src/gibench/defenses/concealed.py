"""Client-side defenses of the concealed-samples study (DCS², Wu et al. AAAI 2024).

Facts from the paper (``papers/concealing_sensitive_samples_dcs2.txt`` §3.3, §4, appendix
8.3) and from the DCS-2 / Soteria / ATS code as summarised in
``reference/ig_and_image_defenses.md`` §5, §6.3, §6.4 and §9; no code copied.

Why these are not paper B's family of :data:`gibench.defenses.DEFENSES`: that family holds
paper B's parameter records, which :class:`gibench.defenses.DefenseChain` applies in a fixed order
(dropout, bottlenecks, DP with per-sample clipping, pruning) and silently ignores any other
name.  DCS² needs the whole client batch, proxy (public) images and an optimisation of its
own; Soteria needs the model and the inputs; ATS changes the inputs; and both papers have a
``prune`` with different semantics (DGC top-k vs numpy percentile).  So these records form
their own *family* of the one defense namespace (:data:`gibench.defenses.DEFENSES`, family
``concealed_samples``: ``DEFENSES.of(CONCEALED)``; the records share
:class:`~gibench.defenses.specs.DefenseRecord` and :class:`DefenseSpecError` with paper B's)
and one entry point,
:func:`defend`, which runs a configured list of steps::

    input steps      (ats)                        change the images the client trains on
    batch step       (dcs2; at most one)          forms the shared gradient from the batch
    gradient steps   (dp_gaussian, prune, soteria) transform the gradient, in list order

``prune+dcs2`` (Table 7, DCS-2's ``dcs_cp``) is the list ``[dcs2, prune]``: pruning on top of
the DCS² gradient.

Defenses:

* ``dp_gaussian`` -- add N(0, std²) to every gradient entry, no clipping (DCS-2 ``dp``; the
  paper calls the value a "variance", the code uses it as the standard deviation -- we follow
  the code).
* ``prune`` -- per tensor, zero the entries whose magnitude is below the ``rate`` percentile
  of that tensor's magnitudes (numpy's linear-interpolation percentile, DCS-2 ``cp``).
* ``soteria`` -- Sun et al. 2021: for every feature f of the representation r (the input of
  the classifier, the model's last ``nn.Linear``), dev_f = Σ_batch ‖∂r_f/∂x‖₂ / (r_f + 0.1);
  the ``round(rate · F)`` features with the smallest dev_f (ties: lower index first) have
  their column of the classifier's *weight* gradient set to zero; the bias is untouched.
  (The code thresholds at the ``rate`` percentile instead, which prunes
  ``ceil(rate · (F - 1))`` columns: at most one more.)
* ``ats`` -- Gao et al. 2021: each image gets one sub-policy drawn uniformly from the policy
  string (``'21-13-3+7-4-15+1-2-5-8-10'``: sub-policies separated by ``+``, each a sequence of
  operation ids of ATS's 50-entry table), applied to the uint8 image with PIL; every operation
  is applied (ATS ignores its probability p).  The shared gradient is the plain gradient of
  the transformed batch; the metrics compare against the transformed image (DCS-2 does).
* ``dcs2`` -- see :class:`DCS2`.

Length: paper C's staged defenses, each record beside the code that applies it (DP, pruning,
Soteria, ATS, DCS²) and :func:`defend`, which runs them in order, so each defense is checked
against the paper in one place.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .specs import CONCEALED, DEFENSES, DefenseRecord, DefenseSpecError, _number


#: the one error type of both defense families (the name is kept for this study's callers)
CSDefenseError = DefenseSpecError


# ====================================================================== records

@dataclass(frozen=True)
class CSDefense(DefenseRecord):
    stage: ClassVar[str] = ""         # input | batch | gradient


@dataclass(frozen=True)
class DPGaussian(CSDefense):
    name: ClassVar[str] = "dp_gaussian"
    stage: ClassVar[str] = "gradient"
    label: ClassVar[str] = "DP-Gaussian"
    std: float = 1e-3

    def check(self) -> None:
        _number(self.name, "std", self.std, 0.0)


@dataclass(frozen=True)
class Prune(CSDefense):
    name: ClassVar[str] = "prune"
    stage: ClassVar[str] = "gradient"
    label: ClassVar[str] = "Prune"
    rate: float = 0.7

    def check(self) -> None:
        _number(self.name, "rate", self.rate, 0.0, 1.0, hi_open=True)


@dataclass(frozen=True)
class Soteria(CSDefense):
    name: ClassVar[str] = "soteria"
    stage: ClassVar[str] = "gradient"
    label: ClassVar[str] = "Soteria"
    rate: float = 0.5
    offset: float = 0.1              # the +0.1 of the denominator (0 in Soteria's DLG notebook)
    chunk: int = 64                  # features back-propagated at once (memory vs speed)

    def check(self) -> None:
        _number(self.name, "rate", self.rate, 0.0, 1.0)
        _number(self.name, "offset", self.offset, 0.0)
        if not isinstance(self.chunk, int) or isinstance(self.chunk, bool) or self.chunk < 1:
            raise CSDefenseError(f"defense 'soteria': chunk must be a positive integer, got {self.chunk!r}")


@dataclass(frozen=True)
class ATS(CSDefense):
    name: ClassVar[str] = "ats"
    stage: ClassVar[str] = "input"
    label: ClassVar[str] = "ATS"
    policy: str = "21-13-3+7-4-15+1-2-5-8-10"

    def check(self) -> None:
        parse_policy(self.policy)


@dataclass(frozen=True)
class DCS2(CSDefense):
    """Defense by Concealing Sensitive Samples (paper §3.3, Algorithm 1).

    1. **Start point** x₀ per sensitive sample (``per_sensitive`` of them, ratio 1:1 in the
       paper): ``start.proxy`` a public image of the same dataset (ỹ_c = its label; otherwise
       ỹ_c is drawn uniformly at random, paper §3.3 remark), ``start.noise`` adds N(0, noise_std²)
       in normalised space (x₀ = noise alone without a proxy: DCS-2's ``--startpoint noise``),
       ``start.mixup`` x₀ ← w·x₀ + (1 − w)·x_s with w = ``mixup_weight`` (paper: 0.7x₀ + 0.3x_s;
       the code uses λ_g for w, ``mixup_weight: null`` follows the code).
    2. **Synthesis** (Eq. 9): minimise over x_c
       ``1 − cos(∇θL(x_c, ỹ_c), ∇θL(x_s, y_s)) + exp(−λ_x · mean_i ‖x_c,i − x_s,i‖₂)
       + λ_z · (mean_i ‖f(x_c,i) − f(x_s,i)‖₂ / ‖f(x_s,i)‖₂ − ε)``
       with Adam (lr ``lr``) for ``iterations`` steps, MultiStepLR at 3/8, 5/8, 7/8 (γ 0.1), the
       cosine global over all layers (denominator + 1e-12), distances in normalised pixel space,
       f = the logits (DCS-2 code; the paper says "latent representation"), no box constraint
       (DCS-2 code).  Stops early once the pixel distance exceeds ``xsim_threshold`` (null: never).
    3. **Mixed gradient** (Eq. 10): g_c = ∇θ[L(x_s, y_s) + λ_g L(x_c, ỹ_c) + (1 − λ_g) L(x_c, y_s)] / d,
       each L a batch-mean cross-entropy; ``scale: code`` divides by d = 3 (2 when λ_g ∈ {0, 1}) as
       DCS-2 does, ``scale: paper`` uses d = 1 (Eq. 10).
    4. **Projection** (Eq. 11-12, GEM): with g = ∇θL(x_s, y_s), if ⟨g, g_c⟩ < 0 the shared
       gradient is ĝ_c = g_c + v*·g, v* = max(margin, −⟨g, g_c⟩ / (‖g‖² + eps)) -- the exact
       solution of the one-constraint QP ``min ½‖g_c − ĝ‖²  s.t. ⟨g, ĝ⟩ ≥ 0`` with the lower
       bound v ≥ margin of GEM's ``project2cone2`` (DCS-2: margin 0.5; the paper's Eq. 12: 0).
       DCS-2 also adds eps = 1e-3 to ‖g‖² (quadprog needs a positive-definite matrix); with it
       ⟨g, ĝ_c⟩ can end slightly negative, so the default here is eps = 0.  Otherwise ĝ_c = g_c.
    """

    name: ClassVar[str] = "dcs2"
    stage: ClassVar[str] = "batch"
    label: ClassVar[str] = "DCS²"
    iterations: int = 1000
    lr: float = 0.1
    lr_schedule: str = "multistep"
    lambda_x: float = 0.01
    lambda_z: float = 0.01
    epsilon: float = 0.01
    lambda_g: float = 0.7
    mixup_weight: float | None = None
    start: Mapping[str, bool] = field(default_factory=lambda: {"proxy": True, "noise": False, "mixup": True})
    noise_std: float = 1.0
    per_sensitive: int = 1
    xsim_threshold: float | None = None
    scale: str = "code"
    project: bool = True
    margin: float = 0.5
    eps: float = 0.0

    def check(self) -> None:
        n = self.name
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 0:
            raise CSDefenseError(f"defense {n!r}: iterations must be an integer >= 0, got {self.iterations!r}")
        _number(n, "lr", self.lr, 0.0, lo_open=True)
        if self.lr_schedule not in ("multistep", "none"):
            raise CSDefenseError(f"defense {n!r}: lr_schedule must be multistep or none, got {self.lr_schedule!r}")
        for k in ("lambda_x", "lambda_z", "epsilon", "noise_std", "margin", "eps"):
            _number(n, k, getattr(self, k), 0.0)
        _number(n, "lambda_g", self.lambda_g, 0.0, 1.0)
        if self.mixup_weight is not None:
            _number(n, "mixup_weight", self.mixup_weight, 0.0, 1.0)
        if self.xsim_threshold is not None:
            _number(n, "xsim_threshold", self.xsim_threshold, 0.0, lo_open=True)
        if not isinstance(self.start, Mapping) or set(self.start) - {"proxy", "noise", "mixup"}:
            raise CSDefenseError(f"defense {n!r}: start must be a mapping with keys proxy, noise, mixup "
                                 f"(booleans), got {self.start!r}")
        if not any(bool(v) for v in self.start.values()):
            raise CSDefenseError(f"defense {n!r}: start: at least one of proxy, noise, mixup must be true")
        if isinstance(self.per_sensitive, bool) or not isinstance(self.per_sensitive, int) or self.per_sensitive < 1:
            raise CSDefenseError(f"defense {n!r}: per_sensitive must be a positive integer, got {self.per_sensitive!r}")
        if self.scale not in ("code", "paper"):
            raise CSDefenseError(f"defense {n!r}: scale must be code or paper, got {self.scale!r}")

    def params(self) -> dict:
        d = asdict(self)
        d["start"] = self.start_flags
        return d

    @property
    def start_flags(self) -> dict[str, bool]:
        return {k: bool(self.start.get(k, False)) for k in ("proxy", "noise", "mixup")}

    @property
    def needs_proxy(self) -> bool:
        return self.start_flags["proxy"]


DEFENSES.family(CONCEALED, "concealed-samples defense")
for _cls in (DPGaussian, Prune, Soteria, ATS, DCS2):
    DEFENSES.add(CONCEALED, _cls)


def parse_steps(specs: Sequence[Any] | None, where: str = "defense") -> list[CSDefense]:
    """A defense list (names or mappings ``{name: ..., <option>: ...}``) -> validated steps."""
    out: list[CSDefense] = []
    for i, item in enumerate(specs or []):
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, Mapping) and "name" in item:
            name, params = str(item["name"]), {k: v for k, v in item.items() if k != "name"}
        else:
            raise CSDefenseError(f"{where}[{i}]: a step is a name or a mapping with 'name', got {item!r}")
        ours = DEFENSES.of(CONCEALED)
        if name not in ours:
            raise CSDefenseError(f"{where}[{i}]: unknown defense {name!r}; known: {', '.join(ours.names())}")
        if any(s.name == name for s in out):
            raise CSDefenseError(f"{where}: defense {name!r} is listed twice")
        out.append(ours.get(name).build(params))
    if sum(s.stage == "batch" for s in out) > 1:
        raise CSDefenseError(f"{where}: at most one batch-forming defense (dcs2)")
    return out


# ====================================================================== gradient transforms

def named_grads(model: nn.Module, loss: torch.Tensor, create_graph: bool = False) -> dict[str, torch.Tensor]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    gs = torch.autograd.grad(loss, [p for _, p in named], create_graph=create_graph, allow_unused=True)
    return {n: (torch.zeros_like(p) if g is None else g) for (n, p), g in zip(named, gs)}


def dp_gaussian(grads: Mapping[str, torch.Tensor], std: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """g + N(0, std²) per entry; the noise is drawn on the CPU (same numbers on every device)."""
    out = {}
    for n, g in grads.items():
        noise = torch.randn(g.shape, generator=generator, dtype=torch.float32) * float(std)
        out[n] = g + noise.to(device=g.device, dtype=g.dtype)
    return out


def prune_percentile(grads: Mapping[str, torch.Tensor], rate: float) -> dict[str, torch.Tensor]:
    """Per tensor: zero |g| < the ``rate``·100-th percentile of |g| (numpy, linear interpolation)."""
    out = {}
    for n, g in grads.items():
        if rate <= 0 or g.numel() == 0:
            out[n] = g.clone()
            continue
        a = g.detach().abs().double().cpu().numpy().ravel()
        thresh = float(np.percentile(a, 100.0 * float(rate)))
        keep = torch.as_tensor((a >= thresh).reshape(tuple(g.shape)), device=g.device)
        out[n] = torch.where(keep, g, torch.zeros_like(g))
    return out


def soteria_scores(model: nn.Module, x: torch.Tensor, offset: float = 0.1, chunk: int = 64) -> torch.Tensor:
    """dev_f = Σ_b ‖∂r_{b,f}/∂x_b‖₂ / (r_{b,f} + offset) for every representation feature f.

    r is the input of the model's last ``nn.Linear`` (flattened).  The F backward passes run
    ``chunk`` at a time as one batched vector-Jacobian product."""
    from ..models.concealed import classifier_layer

    _, fc = classifier_layer(model)
    store: dict[str, torch.Tensor] = {}
    h = fc.register_forward_pre_hook(lambda mod, inp: store.__setitem__("r", inp[0]))
    try:
        xx = x.detach().clone().requires_grad_(True)
        model(xx)
    finally:
        h.remove()
    r = store["r"].flatten(1)                                  # (B, F)
    b, nf = r.shape
    norms = torch.empty(b, nf, dtype=torch.float64, device=r.device)
    eye = torch.eye(nf, dtype=r.dtype, device=r.device)
    for s in range(0, nf, chunk):
        e = min(nf, s + chunk)
        v = eye[s:e].unsqueeze(1).expand(e - s, b, nf)        # cotangents: feature f for every sample
        try:
            (jx,) = torch.autograd.grad(r, xx, grad_outputs=v, retain_graph=True, is_grads_batched=True)
        except RuntimeError:                                   # modules vmap cannot batch: one at a time
            jx = torch.stack([torch.autograd.grad(r, xx, grad_outputs=v[k], retain_graph=True)[0]
                              for k in range(e - s)])
        norms[:, s:e] = jx.flatten(2).double().norm(dim=2).t()
    dev = norms / (r.detach().double() + float(offset))
    return dev.sum(dim=0)


def soteria_mask(scores: torch.Tensor, rate: float) -> torch.Tensor:
    """Boolean keep-mask over features: the round(rate·F) smallest scores are pruned (stable order)."""
    nf = scores.numel()
    k = int(round(float(rate) * nf))
    order = torch.argsort(scores.detach().cpu(), stable=True)
    keep = torch.ones(nf, dtype=torch.bool)
    keep[order[:k]] = False
    return keep.to(scores.device)


def soteria(grads: Mapping[str, torch.Tensor], model: nn.Module, x: torch.Tensor, d: Soteria
            ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from ..models.concealed import classifier_layer

    fc_name, fc = classifier_layer(model)
    wname = f"{fc_name}.weight" if fc_name else "weight"
    if wname not in grads:
        raise CSDefenseError(f"soteria: the classifier weight {wname!r} is not among the gradient's tensors")
    keep = soteria_mask(soteria_scores(model, x, d.offset, d.chunk), d.rate)
    out = dict(grads)
    out[wname] = grads[wname] * keep.to(grads[wname].dtype).view(1, -1)
    return out, {"soteria_layer": wname, "soteria_pruned_columns": int((~keep).sum()),
                 "soteria_columns": int(keep.numel())}


# ====================================================================== ATS

#: ATS's 50 sub-policies (ATSPrivacy policy.py): (operation, magnitude index); p is ignored by ATS
ATS_TABLE: tuple[tuple[str, int], ...] = (
    ("invert", 7), ("contrast", 6), ("rotate", 2), ("translateX", 9), ("sharpness", 1),
    ("sharpness", 3), ("shearY", 2), ("translateY", 2), ("autocontrast", 5), ("equalize", 2),
    ("shearY", 5), ("posterize", 5), ("color", 3), ("brightness", 5), ("sharpness", 9),
    ("brightness", 9), ("equalize", 5), ("equalize", 1), ("contrast", 7), ("sharpness", 5),
    ("color", 5), ("translateX", 5), ("equalize", 7), ("autocontrast", 8), ("translateY", 3),
    ("sharpness", 6), ("brightness", 6), ("color", 8), ("solarize", 0), ("invert", 0),
    ("equalize", 0), ("autocontrast", 0), ("equalize", 8), ("equalize", 4), ("color", 5),
    ("equalize", 5), ("autocontrast", 4), ("solarize", 4), ("brightness", 3), ("color", 0),
    ("solarize", 1), ("autocontrast", 0), ("translateY", 3), ("translateY", 3), ("autocontrast", 1),
    ("solarize", 1), ("equalize", 5), ("invert", 0), ("translateY", 3), ("autocontrast", 1),
)


def _ats_magnitude(op: str, idx: int) -> float:
    """ATS autoaugment.py ranges: 10 evenly spaced magnitudes per operation."""
    lin = lambda a, b: a + (b - a) * idx / 9.0  # noqa: E731
    table = {"shearX": lin(0, 0.3), "shearY": lin(0, 0.3), "translateX": lin(0, 150 / 331),
             "translateY": lin(0, 150 / 331), "rotate": lin(0, 30), "color": lin(0, 0.5),
             "posterize": float(int(round(lin(8, 4)))), "solarize": lin(256, 0), "contrast": lin(0, 0.5),
             "sharpness": lin(0, 0.5), "brightness": lin(0, 0.5)}
    return table.get(op, 0.0)


def parse_policy(policy: str) -> list[list[int]]:
    """``'a-b-c+d-e'`` -> [[a, b, c], [d, e]] (ids into :data:`ATS_TABLE`)."""
    if not isinstance(policy, str) or not policy.strip():
        raise CSDefenseError(f"defense 'ats': policy must be a string like '21-13-3+7-4-15', got {policy!r}")
    out = []
    for part in policy.split("+"):
        try:
            ids = [int(t) for t in part.split("-")]
        except ValueError:
            raise CSDefenseError(f"defense 'ats': policy {policy!r}: {part!r} is not a '-'-separated list of ids") from None
        bad = [i for i in ids if not 0 <= i < len(ATS_TABLE)]
        if bad:
            raise CSDefenseError(f"defense 'ats': policy {policy!r}: ids {bad} outside 0..{len(ATS_TABLE) - 1}")
        out.append(ids)
    return out


def _ats_op(img, op: str, mag: float, sign: int):
    from PIL import Image, ImageEnhance, ImageOps

    fill = (0,) * len(img.getbands())
    if op == "shearX":
        return img.transform(img.size, Image.AFFINE, (1, mag * sign, 0, 0, 1, 0), Image.BICUBIC, fillcolor=fill)
    if op == "shearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, mag * sign, 1, 0), Image.BICUBIC, fillcolor=fill)
    if op == "translateX":
        return img.transform(img.size, Image.AFFINE, (1, 0, mag * img.size[0] * sign, 0, 1, 0), fillcolor=fill)
    if op == "translateY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, mag * img.size[1] * sign), fillcolor=fill)
    if op == "rotate":      # rotate, then fill the uncovered corners with grey 128 (ATS rotate_with_fill)
        rot = img.convert("RGBA").rotate(mag)
        return Image.composite(rot, Image.new("RGBA", rot.size, (128,) * 4), rot).convert(img.mode)
    if op == "color":
        return ImageEnhance.Color(img).enhance(1 + mag * sign)
    if op == "posterize":
        return ImageOps.posterize(img, int(mag))
    if op == "solarize":
        return ImageOps.solarize(img, mag)
    if op == "contrast":
        return ImageEnhance.Contrast(img).enhance(1 + mag * sign)
    if op == "sharpness":
        return ImageEnhance.Sharpness(img).enhance(1 + mag * sign)
    if op == "brightness":
        return ImageEnhance.Brightness(img).enhance(1 + mag * sign)
    if op == "autocontrast":
        return ImageOps.autocontrast(img)
    if op == "equalize":
        return ImageOps.equalize(img)
    if op == "invert":
        return ImageOps.invert(img)
    raise CSDefenseError(f"ats: unknown operation {op!r}")


def ats_transform(images_u8: np.ndarray, policy: str, rng: np.random.Generator) -> tuple[np.ndarray, list[list[int]]]:
    """Apply the policy to uint8 NHWC images: per image one sub-policy drawn uniformly, its
    operations in sequence (random signs drawn from ``rng``).  Returns (images, chosen ids)."""
    from PIL import Image

    subs = parse_policy(policy)
    out, chosen = [], []
    for im in images_u8:
        ids = subs[int(rng.integers(len(subs)))]
        pil = Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im)
        for i in ids:
            op, m = ATS_TABLE[i]
            pil = _ats_op(pil, op, _ats_magnitude(op, m), 1 if rng.random() < 0.5 else -1)
        a = np.asarray(pil, dtype=np.uint8)
        out.append(a[..., None] if a.ndim == 2 else a)
        chosen.append(ids)
    return np.stack(out), chosen


# ====================================================================== DCS²

def flat_dot(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return sum((a[n].double() * b[n].double()).sum() for n in a)


def project_gradient(g: Mapping[str, torch.Tensor], gc: Mapping[str, torch.Tensor], margin: float = 0.5,
                     eps: float = 0.0) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """GEM projection of the mixed gradient ``gc`` onto {ĝ : ⟨g, ĝ⟩ ≥ 0} (see :class:`DCS2`):
    unchanged when ⟨g, g_c⟩ ≥ 0, else ĝ = g_c + v*·g with v* = max(margin, −⟨g, g_c⟩/(‖g‖² + eps)).
    Computed in float64, returned in the inputs' dtype."""
    dot = float(flat_dot(g, gc))
    gg = float(flat_dot(g, g))
    if dot >= 0.0 or gg == 0.0:
        return {n: t.clone() for n, t in gc.items()}, {"projected": False, "dot_before": dot, "v": 0.0, "dot_after": dot}
    v = max(float(margin), -dot / (gg + float(eps)))
    out = {n: (gc[n].double() + v * g[n].double()).to(gc[n].dtype) for n in gc}
    return out, {"projected": True, "dot_before": dot, "v": v, "dot_after": float(flat_dot(g, out))}


def _ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def dcs2_start(x_s: torch.Tensor, y_s: torch.Tensor, d: DCS2, num_classes: int, generator: torch.Generator,
               proxy: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Start points x₀ (``per_sensitive`` per sensitive sample, grouped by sample) and labels ỹ_c."""
    k = d.per_sensitive
    b = x_s.shape[0]
    flags = d.start_flags
    n = b * k
    if flags["proxy"]:
        if proxy is None or proxy[0].shape[0] < n:
            have = 0 if proxy is None else proxy[0].shape[0]
            raise CSDefenseError(f"dcs2: start.proxy needs {n} proxy images (batch {b} x per_sensitive {k}), got {have}")
        x0 = proxy[0][:n].to(x_s).clone()
        y0 = proxy[1][:n].to(y_s.device).long().clone()
        if int(y0.max()) >= num_classes or int(y0.min()) < 0:   # proxies from another label space (Table 6)
            y0 = torch.randint(num_classes, (n,), generator=generator).to(y_s.device)
    else:
        x0 = torch.zeros((n, *x_s.shape[1:]), dtype=x_s.dtype, device=x_s.device)
        y0 = torch.randint(num_classes, (n,), generator=generator).to(y_s.device)
    if flags["noise"]:
        x0 = x0 + (torch.randn(x0.shape, generator=generator) * float(d.noise_std)).to(x0)
    if flags["mixup"]:
        w = d.lambda_g if d.mixup_weight is None else d.mixup_weight
        x0 = w * x0 + (1.0 - w) * x_s.repeat_interleave(k, dim=0)
    return x0, y0


def synthesise_concealed(model: nn.Module, x_s: torch.Tensor, y_s: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor,
                         d: DCS2, progress: Callable[[int, float], None] | None = None) -> tuple[torch.Tensor, dict]:
    """Optimise Eq. 9 from x₀; returns (x_c, info with the loss terms before and after)."""
    k = d.per_sensitive
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    sen_g = [g.detach() for g in torch.autograd.grad(_ce(model, x_s, y_s), params)]
    sen_norm = torch.sqrt(sum(g.pow(2).sum() for g in sen_g))
    with torch.no_grad():
        sen_out = model(x_s).repeat_interleave(k, dim=0)
    xs_rep = x_s.repeat_interleave(k, dim=0)

    def terms(xc: torch.Tensor, create_graph: bool):
        gc = torch.autograd.grad(_ce(model, xc, y0), params, create_graph=create_graph)
        dot = sum((a * b).sum() for a, b in zip(gc, sen_g))
        gnorm = torch.sqrt(sum(a.pow(2).sum() for a in gc))
        g_sim = 1.0 - dot / (gnorm * sen_norm + 1e-12)
        x_sim = (xc - xs_rep).flatten(1).norm(dim=1).mean()
        out = model(xc)
        fx_sim = ((out - sen_out).norm(dim=1) / sen_out.norm(dim=1).clamp_min(1e-12)).mean()
        loss = g_sim + torch.exp(-d.lambda_x * x_sim) + d.lambda_z * (fx_sim - d.epsilon)
        return loss, g_sim, x_sim, fx_sim

    def snapshot(xc: torch.Tensor) -> dict:
        with torch.enable_grad():
            loss, g_sim, x_sim, fx_sim = terms(xc.detach(), False)
        return {"loss": float(loss.detach()), "grad_cosine": float(1.0 - g_sim.detach()),
                "pixel_distance": float(x_sim.detach()), "logit_distance": float(fx_sim.detach())}

    before = snapshot(x0)
    xc = x0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([xc], lr=d.lr)
    m = d.iterations
    sched = (torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[int(m // f) for f in (2.667, 1.6, 1.142)], gamma=0.1)
             if d.lr_schedule == "multistep" else None)
    done, stop = 0, None
    for it in range(m):
        opt.zero_grad(set_to_none=True)
        loss, g_sim, x_sim, fx_sim = terms(xc, True)
        if not torch.isfinite(loss):
            stop = f"non-finite objective at iteration {it}"
            break
        (grad,) = torch.autograd.grad(loss, [xc])
        xc.grad = grad
        opt.step()
        if sched is not None:
            sched.step()
        done = it + 1
        if progress is not None:
            progress(it, float(loss.detach()))
        if d.xsim_threshold is not None and float(x_sim.detach()) > d.xsim_threshold:
            stop = f"pixel distance {float(x_sim.detach()):.1f} > xsim_threshold {d.xsim_threshold} at iteration {it}"
            break
    after = snapshot(xc)
    return xc.detach(), {"before": before, "after": after, "iterations": done, "stopped": stop}


def dcs2_gradient(model: nn.Module, x_s: torch.Tensor, y_s: torch.Tensor, x_c: torch.Tensor, y_c: torch.Tensor,
                  d: DCS2) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(shared ĝ_c, original g, info): Eq. 10 then the projection of Eq. 11-12."""
    k = d.per_sensitive
    lg = float(d.lambda_g)
    y_s_rep = y_s.repeat_interleave(k, dim=0)      # each concealed sample takes its own sample's label
    terms = [_ce(model, x_s, y_s)]
    if lg > 0:
        terms.append(lg * _ce(model, x_c, y_c))
    if lg < 1:
        terms.append((1.0 - lg) * _ce(model, x_c, y_s_rep))
    denom = (2.0 if lg in (0.0, 1.0) else 3.0) if d.scale == "code" else 1.0
    gc = named_grads(model, sum(terms) / denom)
    g = named_grads(model, _ce(model, x_s, y_s))
    info: dict[str, Any] = {"mixed_denominator": denom}
    if d.project:
        shared, pinfo = project_gradient(g, gc, d.margin, d.eps)
        info.update(pinfo)
    else:
        shared = gc
        info.update({"projected": False, "dot_before": float(flat_dot(g, gc))})
    return shared, g, info


# ====================================================================== entry point

@dataclass
class DefendedUpdate:
    shared: dict[str, torch.Tensor]          # what the server receives
    trained_on: torch.Tensor                 # the sensitive inputs the gradient is of (ATS: transformed)
    secrets: dict[str, torch.Tensor]         # the client's private by-products (concealed samples, ...)
    info: dict[str, Any]


def defend(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: Sequence[CSDefense], *, num_classes: int,
           generator: torch.Generator, proxy: tuple[torch.Tensor, torch.Tensor] | None = None,
           to_pixels: Callable[[torch.Tensor], torch.Tensor] | None = None,
           from_pixels: Callable[[torch.Tensor], torch.Tensor] | None = None,
           mode: str = "eval", progress: Callable[[int, float], None] | None = None) -> DefendedUpdate:
    """The client's shared update for the sensitive batch (x, y) (normalised model inputs).

    ``generator`` (CPU) drives every random draw (noise, labels, ATS choices), so the same seed
    gives the same update.  ``proxy`` = (images, labels) of public data in model space (dcs2
    with ``start.proxy``).  ``to_pixels``/``from_pixels`` map between model space and [0, 1]
    pixels (ATS).  ``mode``: the model's mode while computing (eval: the DCS-2 protocol)."""
    model.train(mode == "train")
    info: dict[str, Any] = {"steps": [s.name for s in steps]}
    secrets: dict[str, torch.Tensor] = {}
    for s in steps:
        if s.stage == "input" and isinstance(s, ATS):
            if to_pixels is None or from_pixels is None:
                raise CSDefenseError("ats needs to_pixels/from_pixels to transform the images")
            u8 = (to_pixels(x).clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
            t, chosen = ats_transform(u8, s.policy, rng)
            x = from_pixels(torch.as_tensor(t).permute(0, 3, 1, 2).float().div(255.0)).to(x)
            info["ats_subpolicies"] = chosen
    batch = next((s for s in steps if s.stage == "batch"), None)
    if isinstance(batch, DCS2):
        x0, y0 = dcs2_start(x, y, batch, num_classes, generator, proxy)
        xc, sinfo = synthesise_concealed(model, x, y, x0, y0, batch, progress=progress)
        shared, _, ginfo = dcs2_gradient(model, x, y, xc, y0, batch)
        secrets.update({"concealed_x": xc.detach(), "concealed_y": y0.detach(), "start_x": x0.detach()})
        info["dcs2"] = {**sinfo, **ginfo}
    else:
        shared = named_grads(model, _ce(model, x, y))
    for s in steps:
        if s.stage != "gradient":
            continue
        if isinstance(s, DPGaussian):
            shared = dp_gaussian(shared, s.std, generator)
        elif isinstance(s, Prune):
            shared = prune_percentile(shared, s.rate)
        elif isinstance(s, Soteria):
            shared, sinfo = soteria(shared, model, x, s)
            info.update(sinfo)
    return DefendedUpdate({n: g.detach() for n, g in shared.items()}, x.detach(), secrets, info)


def fl_gradient_fn(steps: Sequence[CSDefense], *, num_classes: int,
                   proxy_sampler: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]] | None = None,
                   to_pixels=None, from_pixels=None):
    """A :data:`gibench.fl.GradFn` that applies the steps to every minibatch of a defended
    client during FedAvg (in the model's current mode); ``proxy_sampler(n, generator)``
    draws n public images for dcs2."""

    def fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        proxy = None
        dcs = next((s for s in steps if isinstance(s, DCS2)), None)
        if dcs is not None and dcs.needs_proxy:
            if proxy_sampler is None:
                raise CSDefenseError("dcs2 with start.proxy needs a proxy sampler during FedAvg")
            proxy = proxy_sampler(x.shape[0] * dcs.per_sensitive, gen)
        was_training = model.training
        upd = defend(model, x, y, steps, num_classes=num_classes, generator=gen, proxy=proxy,
                     to_pixels=to_pixels, from_pixels=from_pixels, mode="train" if was_training else "eval")
        model.train(was_training)
        return upd.shared

    return fn
