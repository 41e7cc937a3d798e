"""Wall time and peak memory of one call (the cost of a significance metric, Table 6).

:func:`measure` reports the *growth* of memory over what was in use when the call began:

* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the
  allocated bytes at the start (exact for tensors of PyTorch's caching allocator; cuBLAS
  workspaces etc. are not counted);
* CPU: the process's resident set size.  Its peak (``VmHWM``) is reset through
  ``/proc/self/clear_refs`` where the kernel allows it (Linux >= 4.0), and in any case
  ``VmRSS`` is **sampled** from ``/proc/self/status`` every ``interval`` seconds in a
  background thread.  The reported peak is the larger of the two, minus the RSS at the
  start; without the ``VmHWM`` reset it is a sampled RSS peak and may miss spikes shorter
  than the interval.  RSS counts everything in the process (also other threads' work).
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

T = TypeVar("T")
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def rss_bytes() -> int | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def _reset_hwm() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 64


class _RssSampler(threading.Thread):
    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = rss_bytes() or 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, rss_bytes() or 0)
            self._halt.wait(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        self.peak = max(self.peak, rss_bytes() or 0)
        return self.peak


def _is_cuda(device: str | torch.device | None) -> bool:
    if device is not None:
        return torch.device(device).type == "cuda"
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def measure(fn: Callable[[], T], device: str | torch.device | None = None,
            interval: float = 0.002) -> tuple[T, float, int]:
    """Run ``fn()``; return ``(result, seconds, peak_bytes)``.

    ``device``: where ``fn`` computes; by default CUDA if CUDA is initialised in this process,
    else the CPU.  On CUDA the device is synchronised before the clock starts and stops.
    ``peak_bytes`` is the peak growth over the memory in use at the start (see the module
    docstring: exact allocator peak on CUDA, RSS peak on the CPU, sampled every
    ``interval`` s in a thread where ``VmHWM`` cannot be reset)."""
    if _is_cuda(device):
        dev = torch.device(device) if device is not None else torch.device("cuda", torch.cuda.current_device())
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        result = fn()
        torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        return result, seconds, max(0, torch.cuda.max_memory_allocated(dev) - base)

    base = rss_bytes() or 0
    hwm_ok = _reset_hwm()
    sampler = _RssSampler(interval)
    sampler.start()
    t0 = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - t0
        peak = sampler.stop()
    if hwm_ok:
        peak = max(peak, (_status_kib("VmHWM") or 0) * 1024)
    return result, seconds, max(0, peak - base)


def warm_up(device: str | torch.device = "cpu") -> None:
    """One-time library warm-up, run before a timed metric: the first ``torch.func``
    transform of a process (module loading, dispatcher set-up) and the first convolution /
    matmul kernels cost about a second that belongs to no metric.  A vmapped
    forward-over-reverse JVP of a tiny conv net's parameter gradient (the operations ``sens``
    uses) is run on ``device``; its result is discarded.  Not timed by :func:`measure`."""
    from torch import nn
    from torch.func import functional_call, grad, jvp, vmap

    dev = torch.device(device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Sigmoid(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).to(dev)
    params = {n: p.detach() for n, p in net.named_parameters()}
    x = torch.zeros(1, 3, 8, 8, device=dev)
    y = torch.zeros(1, dtype=torch.long, device=dev)

    def g(xx):
        return grad(lambda p: torch.nn.functional.cross_entropy(functional_call(net, p, (xx,)), y))(params)

    vmap(lambda v: jvp(g, (x,), (v,))[1])(torch.eye(4, 3 * 64, device=dev).view(4, 1, 3, 8, 8))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def describe_method(device: str | torch.device | None = None) -> dict[str, Any]:
    """How :func:`measure` measures memory here (for benchmark/cost records)."""
    if _is_cuda(device):
        return {"memory": "torch.cuda.max_memory_allocated growth"}
    return {"memory": "CPU RSS growth: max(VmHWM after a clear_refs reset, VmRSS sampled in a thread)"
            if _reset_hwm() else "CPU RSS growth: sampled VmRSS peak"}
