"""Seeds derive from a stable hash of (study seed, purpose, wildcards): any job re-runs alone
and gets the same stream, independent of job order or of which other jobs exist."""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:   # imported by torch_generator: derive_seed runs at DAG build, which needs no torch
    import torch


def derive_seed(base: int, purpose: str, **wildcards: Any) -> int:
    """A 63-bit seed from the study seed, a purpose tag and the job's wildcards (order-free)."""
    payload = json.dumps({"base": int(base), "purpose": purpose, "wc": wildcards},
                         sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "big") >> 1


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def numpy_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(int(seed))
