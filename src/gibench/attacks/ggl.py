"""Generative Gradient Leakage (GGL, Li et al. CVPR 2022): optimise the latent code of a
generator trained on public data so that the generated image's gradient matches the shared
one.  Facts from GGL's ``celeba32_wgan-gp.py`` / GAN notebook and DCS-2's ``GGl_attack``
(``reference/ig_and_image_defenses.md`` §7 and §6.2); no code copied.

* **Generator** (GGL's 32x32 WGAN-GP DCGAN, latent 128, DIM 128):
  Linear(128, 4·4·4·DIM) -> BN1d -> ReLU -> ConvT(4DIM, 2DIM, 2, 2) -> BN -> ReLU ->
  ConvT(2DIM, DIM, 2, 2) -> BN -> ReLU -> ConvT(DIM, C, 2, 2) -> Tanh: 32x32 images in
  [-1, 1] (CelebA normalised with 0.5/0.5).  For other normalisations the image is mapped to
  the model's input space as ((G(z) + 1)/2 − mean)/std.
* **Critic**: three stride-2 3x3 convolutions (DIM, 2DIM, 4DIM; padding 1) with LeakyReLU(0.2),
  then Linear(4·4·4DIM, 1).
* **WGAN-GP training** (Gulrajani et al. 2017, GGL's notebook): Adam lr 1e-4, betas (0.5, 0.999),
  batch 64, ``n_critic`` 5 critic steps per generator step, gradient penalty
  λ_GP·(‖∇D(x̂)‖₂ − 1)² on random interpolates x̂, λ_GP = 10.
* **Latent search**, ``optimizer``:
  - ``adam`` (as DCS-2 runs GGL): z ~ N(0, I) (seeded), Adam lr 0.1, MultiStepLR at 3/8, 5/8, 7/8
    (γ 0.1), ``iterations`` (10,000), loss = global cosine gradient distance (all layers)
    + tv·TV(G(z)) + kld·KLD(z) with tv = kld = 1e-4;
  - ``cma`` (as GGL does, nevergrad's CMA): CMA-ES from z = 0 (σ₀ = 1) with ``population`` 50
    candidates per generation for ``budget`` 500 generations (25,000 evaluations), loss = the mean
    over layers of the squared L2 gradient distance + 0.1·KLD(z), via the ``cma`` package.
  KLD(z) = −½ Σ_b (1 + log σ_b² − μ_b² − σ_b²), μ_b and σ_b the mean and standard deviation of
  sample b's latent entries.
* Labels: known (threat model) by default.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..params import ParamSpec
from .base import ATTACKS, AttackResult

LATENT = 128
DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",        # adam (DCS-2) | cma (GGL)
    "iterations": 10000,        # adam steps
    "lr": 0.1,
    "lr_schedule": "multistep",
    "tv": 1e-4,
    "kld": 1e-4,                # adam; GGL's CMA-ES run uses 0.1 (cma_kld)
    "budget": 500,              # cma generations
    "population": 50,
    "sigma0": 1.0,
    "cma_kld": 0.1,
    "labels": "known",
}


class Generator(nn.Module):
    def __init__(self, channels: int = 3, latent: int = LATENT, dim: int = 128):
        super().__init__()
        self.latent, self.dim = latent, dim
        self.fc = nn.Linear(latent, 4 * 4 * 4 * dim)
        self.bn0 = nn.BatchNorm1d(4 * 4 * 4 * dim)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(4 * dim, 2 * dim, 2, stride=2), nn.BatchNorm2d(2 * dim), nn.ReLU(),
            nn.ConvTranspose2d(2 * dim, dim, 2, stride=2), nn.BatchNorm2d(dim), nn.ReLU(),
            nn.ConvTranspose2d(dim, channels, 2, stride=2), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn0(self.fc(z))).view(-1, 4 * self.dim, 4, 4)
        return self.up(h)


class Critic(nn.Module):
    def __init__(self, channels: int = 3, dim: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, dim, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(dim, 2 * dim, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * dim, 4 * dim, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        )
        self.fc = nn.Linear(4 * 4 * 4 * dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


def train_wgan_gp(images_pm1: torch.Tensor, *, generator_steps: int, seed: int, dim: int = 128, batch_size: int = 64,
                  n_critic: int = 5, lambda_gp: float = 10.0, lr: float = 1e-4, betas=(0.5, 0.999),
                  device: torch.device | str = "cpu", progress: Callable[[int, dict], None] | None = None
                  ) -> tuple[Generator, list[dict]]:
    """Train the generator on ``images_pm1`` (N, C, 32, 32) scaled to [-1, 1]."""
    if tuple(images_pm1.shape[-2:]) != (32, 32):
        raise ValueError(f"ggl: the WGAN-GP generator makes 32x32 images; the data is {tuple(images_pm1.shape[-2:])}")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(int(seed) % 2**63)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) % 2**63)
        g, d = Generator(images_pm1.shape[1], LATENT, dim), Critic(images_pm1.shape[1], dim)
    g, d = g.to(device), d.to(device)
    og = torch.optim.Adam(g.parameters(), lr=lr, betas=tuple(betas))
    od = torch.optim.Adam(d.parameters(), lr=lr, betas=tuple(betas))
    n = images_pm1.shape[0]
    bs = min(batch_size, n)
    log: list[dict] = []
    for step in range(int(generator_steps)):
        for _ in range(n_critic):
            idx = torch.randint(n, (bs,), generator=gen)
            real = images_pm1[idx].to(device)
            z = torch.randn(bs, LATENT, generator=gen).to(device)
            with torch.no_grad():
                fake = g(z)
            alpha = torch.rand(bs, 1, 1, 1, generator=gen).to(device)
            mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
            (gd,) = torch.autograd.grad(d(mix).sum(), mix, create_graph=True)
            gp = ((gd.flatten(1).norm(dim=1) - 1) ** 2).mean()
            wdist = d(real).mean() - d(fake).mean()
            loss_d = -wdist + lambda_gp * gp
            od.zero_grad(set_to_none=True)
            loss_d.backward()
            od.step()
        z = torch.randn(bs, LATENT, generator=gen).to(device)
        loss_g = -d(g(z)).mean()
        og.zero_grad(set_to_none=True)
        loss_g.backward()
        og.step()
        row = {"step": step, "critic_loss": float(loss_d.detach()), "generator_loss": float(loss_g.detach()),
               "wasserstein": float(wdist.detach()), "gradient_penalty": float(gp.detach())}
        log.append(row)
        if progress is not None:
            progress(step, row)
    return g.eval(), log


def kld(z: torch.Tensor) -> torch.Tensor:
    mu = z.mean(dim=1)
    var = z.var(dim=1, unbiased=True).clamp_min(1e-12)
    return -0.5 * torch.sum(1 + var.log() - mu.pow(2) - var)


def resolve_cfg(cfg: dict | None) -> dict:
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"ggl: unknown option(s) {unknown}; known: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **cfg}
    for k, allowed in {"optimizer": ("adam", "cma"), "lr_schedule": ("multistep", "none"),
                       "labels": ("known", "recover")}.items():
        if out[k] not in allowed:
            raise ValueError(f"ggl: {k} must be one of {', '.join(allowed)}, not {out[k]!r}")
    return out


_POS = {"type": "number", "exclusiveMinimum": 0}
#: JSON schema of each option (gibench.params)
SCHEMA: dict[str, dict] = {
    "optimizer": {"enum": ["adam", "cma"]},
    "iterations": {"type": "integer", "minimum": 0},
    "lr": _POS,
    "lr_schedule": {"enum": ["multistep", "none"]},
    "tv": {"type": "number", "minimum": 0},
    "kld": {"type": "number", "minimum": 0},
    "budget": {"type": "integer", "minimum": 1},
    "population": {"type": "integer", "minimum": 2},
    "sigma0": _POS,
    "cma_kld": {"type": "number", "minimum": 0},
    "labels": {"enum": ["known", "recover"]},
}


@ATTACKS.register("ggl", params=ParamSpec("ggl", SCHEMA, DEFAULTS, resolve_cfg), display="GGL",
                  studies=("concealed_samples",), needs=("generator",))
def ggl_attack(model: nn.Module, shared: dict[str, torch.Tensor], visible: dict[str, torch.Tensor] | None, *,
               input_shape: tuple[int, ...], mean, std, labels: torch.Tensor | None, cfg: dict | None, seed: int,
               device: torch.device | str = "cpu", progress: Callable[[int, float], None] | None = None,
               generator: nn.Module | None = None, **_: Any) -> AttackResult:
    from .ig import attack_labels, milestones, total_variation
    from .objectives import GradientMatch

    c = resolve_cfg(cfg)
    if generator is None:
        raise ValueError("ggl: the attack needs the generator trained on public data (generator=...)")
    device = torch.device(device)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    gnet = generator.to(device).eval()
    for p in gnet.parameters():
        p.requires_grad_(False)
    b = int(input_shape[0])
    if tuple(input_shape[1:]) != (gnet.up[-2].out_channels, 32, 32):
        raise ValueError(f"ggl: the generator makes ({gnet.up[-2].out_channels}, 32, 32) images, the model "
                         f"takes {tuple(input_shape[1:])}")
    y, labels_from = attack_labels(model, shared, visible, labels, b, c["labels"], device)
    m_t = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s_t = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def to_model(z: torch.Tensor) -> torch.Tensor:
        return ((gnet(z) + 1) / 2 - m_t) / s_t

    named = list(model.named_parameters())
    params = [p for _, p in named]
    t0 = time.time()
    trace: list[dict] = []
    gen = torch.Generator().manual_seed(int(seed) % 2**63)
    if c["optimizer"] == "adam":
        match = GradientMatch(named, shared, visible, "masked_cosine")
        mparams = match.params
        z = torch.randn(b, LATENT, generator=gen).to(device).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=c["lr"])
        m = int(c["iterations"])
        sched = (torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones(m), gamma=0.1)
                 if c["lr_schedule"] == "multistep" else None)
        every = max(1, m // 400)

        def objective(zz):
            x = to_model(zz)
            g = torch.autograd.grad(F.cross_entropy(model(x), y), mparams, create_graph=True)
            dist = match(g)
            return dist + c["tv"] * total_variation(x) + c["kld"] * kld(zz), dist

        for it in range(m):
            opt.zero_grad(set_to_none=True)
            total, dist = objective(z)
            (gz,) = torch.autograd.grad(total, [z])
            z.grad = gz
            opt.step()
            if sched is not None:
                sched.step()
            if it % every == 0 or it == m - 1:
                trace.append({"iteration": it, "loss": float(total), "grad_distance": float(dist),
                              "tv": float("nan"), "lr": float(opt.param_groups[0]["lr"])})
            if progress is not None:
                progress(it, float(total))
        with torch.enable_grad():
            final = float(objective(z.detach())[1])
        z_best = z.detach()
        evals = m
    else:
        try:
            import cma
        except ImportError as e:
            raise ImportError("ggl optimizer: cma needs the `cma` package (pip install cma)") from e
        match = GradientMatch(named, shared, visible, "masked_l2")
        mparams = match.params

        def loss_of(zvec) -> float:
            zz = torch.as_tensor(zvec, dtype=torch.float32, device=device).view(b, LATENT)
            x = to_model(zz)
            g = torch.autograd.grad(F.cross_entropy(model(x), y), mparams)
            per_layer = [((gi - t) if mm is None else (gi - t) * mm).pow(2).sum()
                         for gi, t, mm in zip(g, match.targets, match.masks)]
            dist = torch.stack(per_layer).mean()
            return float(dist + c["cma_kld"] * kld(zz))

        es = cma.CMAEvolutionStrategy([0.0] * (b * LATENT), float(c["sigma0"]),
                                      {"popsize": int(c["population"]), "seed": int(seed) % (2**31 - 2) + 1,
                                       "maxiter": int(c["budget"]), "verbose": -9})
        evals = 0
        for it in range(int(c["budget"])):
            cand = es.ask()
            vals = [loss_of(v) for v in cand]
            evals += len(cand)
            es.tell(cand, vals)
            trace.append({"iteration": it, "loss": float(min(vals)), "grad_distance": float(min(vals)),
                          "tv": float("nan"), "lr": float(es.sigma)})
            if progress is not None:
                progress(it, float(min(vals)))
            if es.stop() and "maxiter" not in es.stop():
                break
        z_best = torch.as_tensor(es.result.xbest if es.result.xbest is not None else es.mean,
                                 dtype=torch.float32, device=device).view(b, LATENT)
        final = loss_of(z_best.flatten().cpu().numpy())
    with torch.no_grad():
        x = to_model(z_best)
    seconds = time.time() - t0
    return AttackResult(x=x.detach(), labels=y.detach(), status="ok",
                        message=f"{c['optimizer']}: {evals} evaluations, final loss {final:.4g}",
                        final_loss=final, trace=trace,
                        info={"settings": c, "labels_from": labels_from, "evaluations": evals,
                              "seconds": round(seconds, 3), "latent": z_best.detach().cpu().tolist()})
