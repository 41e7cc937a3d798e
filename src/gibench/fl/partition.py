"""The clients' data (:mod:`gibench.fl`): IID and Dirichlet(α) partitions of the training pool,
each client's validation share, optional per-client caps, and the :class:`Pool` the runs read
minibatches from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..seeds import derive_seed

from .settings import FLConfigError, settings_from


# ===================================================================== data

def partition_iid(n: int, clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Positions 0..n-1 in a seeded permutation cut into ``clients`` near-equal parts."""
    if clients > n:
        raise FLConfigError(f"fl.clients = {clients} but the training pool holds only {n} samples")
    return [np.sort(p) for p in np.array_split(rng.permutation(n), clients)]


def partition_dirichlet(labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator,
                        min_samples: int = 2, max_tries: int = 1000) -> list[np.ndarray]:
    """Label-skewed split: for each class c, proportions p_c ~ Dir(α·1_N) over the N clients
    and the class's (shuffled) samples are cut at the cumulative proportions (Hsu et al. 2019).
    Redrawn until every client holds at least ``min_samples`` samples."""
    labels = np.asarray(labels)
    if alpha <= 0:
        raise FLConfigError(f"fl.partition.alpha must be > 0, got {alpha}")
    if clients * min_samples > len(labels):
        raise FLConfigError(f"fl.partition: {clients} clients x min_samples {min_samples} exceed the "
                            f"{len(labels)} samples of the training pool")
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            p = rng.dirichlet(np.full(clients, float(alpha)))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].append(chunk)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in out) >= min_samples:
            return out
    raise FLConfigError(f"fl.partition: no Dirichlet(alpha={alpha}) split gave every one of {clients} clients "
                        f"at least {min_samples} samples in {max_tries} draws; raise alpha or lower min_samples")


def split_validation(idx: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) positions: round(fraction·n) of a client's shard, drawn at random, for
    validation (at least one when fraction > 0 and the shard has two or more samples)."""
    n = len(idx)
    n_val = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    perm = rng.permutation(n)
    return np.sort(idx[perm[n_val:]]), np.sort(idx[perm[:n_val]])


@dataclass
class ClientShard:
    client: int
    train: np.ndarray           # positions into the pool
    val: np.ndarray


def make_clients(labels: np.ndarray, settings: Mapping[str, Any], seed: int) -> list[ClientShard]:
    """The clients' shards of a training pool with these labels (positions into the pool)."""
    s = settings_from(settings)
    rng = np.random.default_rng(derive_seed(seed, "fl_partition"))
    n = len(labels)
    part = s["partition"]
    if part["type"] == "iid":
        shards = partition_iid(n, s["clients"], rng)
    elif part["type"] == "dirichlet":
        shards = partition_dirichlet(labels, s["clients"], part["alpha"], rng, part.get("min_samples", 2))
    else:
        raise FLConfigError(f"fl.partition.type: unknown {part['type']!r} (iid | dirichlet)")
    cap = s.get("samples_per_client")
    out = []
    for k, shard in enumerate(shards):
        if cap is not None:
            if len(shard) < cap:
                raise FLConfigError(f"fl.samples_per_client = {cap} but client {k} holds only {len(shard)} "
                                    "samples of the training pool")
            shard = np.sort(rng.permutation(shard)[:cap])
        tr, va = split_validation(shard, s["val_fraction"], rng)
        if len(tr) == 0:
            raise FLConfigError(f"client {k} has no training samples (shard of {len(shard)}); lower fl.clients")
        out.append(ClientShard(k, tr, va))
    return out


class Pool:
    """Images and labels the simulation indexes by position.

    Holds either model-space tensors (``x``) or uint8 NHWC images plus a ``normalize``
    function applied per batch (for pools too large to keep as float)."""

    def __init__(self, labels: np.ndarray | torch.Tensor, x: torch.Tensor | None = None,
                 images: np.ndarray | None = None,
                 normalize: Callable[[np.ndarray], torch.Tensor] | None = None):
        self.y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if (x is None) == (images is None):
            raise ValueError("Pool needs exactly one of x (tensors) or images (+ normalize)")
        if images is not None and normalize is None:
            raise ValueError("Pool(images=...) needs a normalize function")
        self.x, self.images, self.normalize = x, images, normalize
        n = len(x) if x is not None else len(images)
        if n != len(self.y):
            raise ValueError(f"Pool: {n} inputs but {len(self.y)} labels")

    @classmethod
    def from_images(cls, images: np.ndarray, labels: np.ndarray, normalize: Callable[[np.ndarray], torch.Tensor],
                    max_bytes: int = 2 << 30, chunk: int = 2048) -> "Pool":
        """Normalise once and keep float tensors when they fit in ``max_bytes``; otherwise
        normalise batch by batch."""
        probe = normalize(images[:1])
        if probe.numel() * 4 * len(images) <= max_bytes:
            x = torch.cat([normalize(images[i:i + chunk]) for i in range(0, len(images), chunk)])
            return cls(labels, x=x)
        return cls(labels, images=images, normalize=normalize)

    def __len__(self) -> int:
        return len(self.y)

    def get(self, pos: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        pos_t = torch.as_tensor(np.asarray(pos), dtype=torch.long)
        if self.x is not None:
            x = self.x[pos_t]
        else:
            x = self.normalize(self.images[np.asarray(pos)])
        return x.to(device), self.y[pos_t].to(device)
