"""CKKS (TenSEAL) cost of selective encryption: throughput, bytes, full-model streaming.

``run()`` measures, on this CPU:

1. ``throughput_1m``: one million gradient-like entries (N(0, 1e-3^2), float32) fully
   encrypted, through :func:`gibench.he.measure_overhead` with 3 clients: entries/s for
   encryption (+ serialisation), server aggregation and decryption, bytes per entry; plus
   the split of client time into encryption and serialisation; and the same update at a
   10% random mask.
2. ``lenet``: :func:`gibench.he.measure_overhead` on LeNet (88,648 entries) at ratios
   0, 0.1, 0.3, 1 (random masks), 3 clients.
3. ``full``: BERT-base (109,483,778) and GPT-2 (124,441,344) sized updates fully encrypted,
   streamed: each of 2 clients (one process each, as real clients would be) generates its
   update batch by batch from a seeded RNG, weights it, encrypts it in <= N/2-slot
   ``ckks_vector`` s and serialises them; the server (this process, public context only)
   sums the two clients' ciphertexts chunk by chunk and counts bytes; the key holder
   decrypts one summed chunk per batch and checks it against the plaintext weighted sum.
   Peak RSS is sampled from /proc/<pid>/status (VmRSS) of this process and of the client
   processes in a thread; the target is <= 4 GiB in total.

Sizes are parameters (``full_sizes``); the defaults are the full model sizes.  Run as a
script to print the JSON, or through ``benchmarks/run.py he``.
"""
from __future__ import annotations

import importlib
import json
import math
import multiprocessing as mp
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

FULL_SIZES = {"bert": 109_483_778, "gpt2": 124_441_344}
RSS_TARGET_BYTES = 4 * 2**30


# --------------------------------------------------------------------------- RSS sampling
def _vmrss(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RSSSampler:
    """Samples VmRSS of this process and of the given child pids every ``interval`` s."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.pids: list[int] = []
        self.peak_self = self.peak_children = self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            s = _vmrss()
            kids = [_vmrss(p) for p in list(self.pids)]
            self.peak_self = max(self.peak_self, s)
            self.peak_children = max([self.peak_children, *kids])
            self.peak_total = max(self.peak_total, s + sum(kids))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def report(self) -> dict:
        return {"peak_rss_self_bytes": self.peak_self,
                "peak_rss_client_process_bytes": self.peak_children,
                "peak_rss_total_bytes": self.peak_total,
                "peak_rss_total_gib": self.peak_total / 2**30,
                "rss_target_gib": RSS_TARGET_BYTES / 2**30,
                "rss_within_target": self.peak_total <= RSS_TARGET_BYTES}


# --------------------------------------------------------------------------- synthetic clients
def _client_values(seed: int, client: int, batch: int, size: int) -> np.ndarray:
    """Client ``client``'s update entries of batch ``batch``: gradient-like N(0, 1e-3^2)
    rounded to float32 (what a client holds), returned as float64."""
    rng = np.random.default_rng([seed, client, batch])
    return (rng.standard_normal(size, dtype=np.float32) * np.float32(1e-3)).astype(np.float64)


def _client_batches(pub_bytes: bytes, client: int, weight: float, n_entries: int,
                    batch_entries: int, seed: int):
    """Yield (batch, ciphertexts, encrypt_s, serialise_s): the client's weighted update,
    batch by batch, as serialised <= N/2-slot CKKS vectors.  Same calls as
    ``gibench.he.encrypt_chunks`` (``ts.ckks_vector`` + ``serialize``), timed apart.
    Imports TenSEAL only (no torch) to keep the client processes small."""
    import tenseal as ts

    ctx = ts.context_from(pub_bytes)
    slots = ctx.seal_context().data.key_context_data().parms().poly_modulus_degree() // 2
    n_batches = math.ceil(n_entries / batch_entries)
    for b in range(n_batches):
        size = min(batch_entries, n_entries - b * batch_entries)
        vals = _client_values(seed, client, b, size) * weight
        t0 = time.perf_counter()
        vecs = [ts.ckks_vector(ctx, vals[i:i + slots]) for i in range(0, size, slots)]
        t1 = time.perf_counter()
        cts = [v.serialize() for v in vecs]
        t2 = time.perf_counter()
        del vecs
        yield b, cts, t1 - t0, t2 - t1


def _client_process(pub_bytes, client, weight, n_entries, batch_entries, seed, out_q):
    try:
        for item in _client_batches(pub_bytes, client, weight, n_entries, batch_entries, seed):
            out_q.put(("batch", item))
        out_q.put(("done", None))
    except BaseException:  # report to the server process instead of hanging it
        out_q.put(("error", traceback.format_exc()))


def _worker_target():
    """The client-process function, importable by spawned children."""
    if __name__ == "__main__" or sys.modules.get(__name__) is not None:
        return _client_process
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return importlib.import_module(__name__)._client_process


# --------------------------------------------------------------------------- full-size run
def stream_full_model(n_entries: int, *, n_clients: int = 2, weights=(0.25, 0.75),
                      batch_entries: int = 256 * 4096, seed: int = 0,
                      processes: bool = True) -> dict:
    from gibench import he

    params = he.HEParams()
    t0 = time.perf_counter()
    ctx = he.make_context(params)
    keygen_s = time.perf_counter() - t0
    pub_bytes = he.public_context(ctx)
    server_ctx = he.load_context(pub_bytes)
    slots = he.slot_count(ctx)
    if batch_entries % slots:
        raise ValueError(f"batch_entries must be a multiple of {slots}")
    weights = [float(w) for w in weights][:n_clients]
    n_batches = math.ceil(n_entries / batch_entries)

    enc_s = [0.0] * n_clients
    ser_s = [0.0] * n_clients
    ct_bytes = [0] * n_clients
    n_ct = [0] * n_clients
    sum_s = dec_s = 0.0
    sum_bytes = n_sum = n_checked = 0
    max_err = 0.0
    rng_check = np.random.default_rng(seed + 1)

    with RSSSampler() as rss:
        t_wall = time.perf_counter()
        if processes:
            mpc = mp.get_context("spawn")
            target = _worker_target()
            queues = [mpc.Queue(maxsize=2) for _ in range(n_clients)]
            procs = [mpc.Process(target=target, args=(pub_bytes, c, weights[c], n_entries,
                                                      batch_entries, seed, queues[c]),
                                 daemon=True) for c in range(n_clients)]
            for p in procs:
                p.start()
            rss.pids = [p.pid for p in procs]

            def next_batch(c):
                while True:
                    try:
                        kind, item = queues[c].get(timeout=60)
                    except Exception:  # noqa: BLE001 - queue.Empty: still alive?
                        if not procs[c].is_alive():
                            raise RuntimeError(f"client process {c} died "
                                               f"(exit code {procs[c].exitcode})")
                        continue
                    if kind == "error":
                        raise RuntimeError(f"client process {c} failed:\n{item}")
                    return item
        else:
            gens = [_client_batches(pub_bytes, c, weights[c], n_entries, batch_entries, seed)
                    for c in range(n_clients)]
            procs = []

            def next_batch(c):
                return next(gens[c])

        try:
            for b in range(n_batches):
                items = [next_batch(c) for c in range(n_clients)]
                for c, (bb, cts, e, s) in enumerate(items):
                    assert bb == b
                    enc_s[c] += e
                    ser_s[c] += s
                    ct_bytes[c] += sum(len(x) for x in cts)
                    n_ct[c] += len(cts)
                t0 = time.perf_counter()
                sums = [he.sum_ciphertexts(server_ctx, [it[1][j] for it in items])
                        for j in range(len(items[0][1]))]
                sum_s += time.perf_counter() - t0
                sum_bytes += sum(len(x) for x in sums)
                n_sum += len(sums)
                del items
                # key holder: decrypt one summed chunk of this batch and check it
                j = int(rng_check.integers(len(sums)))
                t0 = time.perf_counter()
                got = he.decrypt_ciphertext(ctx, sums[j])
                dec_s += time.perf_counter() - t0
                n_checked += 1
                size = min(batch_entries, n_entries - b * batch_entries)
                want = sum(w * _client_values(seed, c, b, size)[j * slots:(j + 1) * slots]
                           for c, w in enumerate(weights))
                if got.shape != want.shape:
                    raise RuntimeError(f"batch {b} chunk {j}: {got.shape} != {want.shape}")
                max_err = max(max_err, float(np.abs(got - want).max()))
                del sums
            wall_s = time.perf_counter() - t_wall
        finally:
            for p in procs:
                p.join(timeout=30)
                if p.is_alive():
                    p.terminate()
    client_s = [e + s for e, s in zip(enc_s, ser_s)]
    return {
        "n_entries": n_entries, "n_clients": n_clients, "weights": weights,
        "batch_entries": batch_entries, "client_processes": processes,
        "params": params.to_dict(), "keygen_s": keygen_s,
        "ciphertexts_per_client": n_ct[0], "ciphertext_bytes_per_client": ct_bytes[0],
        "ciphertext_gb_per_client": ct_bytes[0] / 1e9,
        "bytes_per_entry": ct_bytes[0] / n_entries,
        "ratio_to_fp32": ct_bytes[0] / (4 * n_entries),
        "client_encrypt_s": enc_s, "client_serialise_s": ser_s,
        "client_total_s": client_s,
        "client_entries_per_s": [n_entries / s for s in client_s],
        "server_sum_s": sum_s, "server_sum_entries_per_s": n_entries / sum_s,
        "aggregate_bytes": sum_bytes, "aggregate_ciphertexts": n_sum,
        "decrypt_checked_chunks": n_checked, "decrypt_checked_s": dec_s,
        "decrypt_s_per_ciphertext": dec_s / max(n_checked, 1),
        "max_abs_error_checked": max_err,
        "wall_s": wall_s, **rss.report(),
    }


# --------------------------------------------------------------------------- small runs
def _throughput(n_entries: int, seed: int) -> dict:
    import tenseal as ts
    import torch

    from gibench import he

    g = torch.Generator().manual_seed(seed)
    upd = {"w": torch.randn(n_entries, generator=g) * 1e-3}
    full = {"w": torch.ones(n_entries, dtype=torch.bool)}
    r = he.measure_overhead(upd, full, he.HEParams(), n_clients=3, seed=seed)
    out = {"n_entries": n_entries, "overhead_full": r,
           "encrypt_entries_per_s": r["n_encrypted"] / r["client_encrypt_s"],
           "server_aggregate_entries_per_s": r["n_encrypted"] / r["server_aggregate_s"],
           "decrypt_entries_per_s": r["n_encrypted"] / r["decrypt_s"],
           "bytes_per_entry": r["ciphertext_bytes"] / r["n_encrypted"]}
    # split of the client time: CKKS encryption vs serialisation, one pass
    ctx = he.make_context()
    vals = upd["w"].double().numpy()
    slots = he.slot_count(ctx)
    t0 = time.perf_counter()
    vecs = [ts.ckks_vector(ctx, vals[i:i + slots]) for i in range(0, n_entries, slots)]
    t1 = time.perf_counter()
    cts = [v.serialize() for v in vecs]
    t2 = time.perf_counter()
    out["encrypt_only_s"] = t1 - t0
    out["serialise_only_s"] = t2 - t1
    out["mean_ciphertext_bytes"] = sum(map(len, cts)) / len(cts)
    part = {"w": torch.rand(n_entries, generator=g) < 0.1}
    out["overhead_ratio_0.1"] = he.measure_overhead(upd, part, he.HEParams(), n_clients=3,
                                                    seed=seed)
    return out


def _lenet(seed: int, ratios=(0.0, 0.1, 0.3, 1.0)) -> dict:
    import torch

    from gibench import he
    from gibench.models import build_model

    model = build_model("lenet", 100, (3, 32, 32), seed=seed)
    g = torch.Generator().manual_seed(seed)
    upd = {n: torch.randn(p.shape, generator=g) * 1e-3 for n, p in model.named_parameters()}
    out = {}
    for r in ratios:
        mask = {n: torch.rand(t.shape, generator=g) < r for n, t in upd.items()}
        out[f"{r:.2f}"] = he.measure_overhead(upd, mask, he.HEParams(), n_clients=3, seed=seed)
    return out


def run(full_sizes: dict | None = None, throughput_entries: int = 1_000_000,
        batch_entries: int = 256 * 4096, seed: int = 0, processes: bool = True) -> dict:
    from gibench import he

    sizes = FULL_SIZES if full_sizes is None else full_sizes
    res: dict = {"device": he.device_string(), "cores": os.cpu_count()}
    # full-size runs first, before this process has started any torch thread pools
    res["full"] = {name: stream_full_model(n, batch_entries=batch_entries, seed=seed,
                                           processes=processes)
                   for name, n in sizes.items()}
    res["throughput_1m"] = _throughput(throughput_entries, seed)
    res["lenet"] = _lenet(seed)
    res["all_within_rss_target"] = all(v["rss_within_target"] for v in res["full"].values())
    return res


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bert", type=int, default=FULL_SIZES["bert"])
    ap.add_argument("--gpt2", type=int, default=FULL_SIZES["gpt2"])
    ap.add_argument("--throughput-entries", type=int, default=1_000_000)
    ap.add_argument("--in-process", action="store_true",
                    help="run the clients sequentially in this process")
    a = ap.parse_args()
    print(json.dumps(run({"bert": a.bert, "gpt2": a.gpt2}, a.throughput_entries,
                         processes=not a.in_process), indent=2))
