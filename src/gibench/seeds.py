"""Seeds derive from a stable hash of (study seed, purpose, wildcards): any job re-runs alone
and gets the same stream, independent of job order or of which other jobs exist."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch


def derive_seed(base: int, purpose: str, **wildcards: Any) -> int:
    """A 63-bit seed from the study seed, a purpose tag and the job's wildcards (order-free)."""
    payload = json.dumps({"base": int(base), "purpose": purpose, "wc": wildcards},
                         sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "big") >> 1


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def numpy_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(int(seed))
