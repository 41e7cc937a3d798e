"""CKKS (TenSEAL) cost of selective encryption on this CPU: throughput, bytes, full models.

``run()`` measures, all through :func:`gibench.he.measure_overhead` (the code the pipeline's
``overhead`` rule runs: streamed FedAvg round, server with the public context only, key
holder decrypts every summed ciphertext and checks it against the float64 FedAvg):

1. ``full``: **BERT-base-sized (109,483,778) and GPT-2-sized (124,441,344) updates, fully
   encrypted** (ratio 1; the worst case), 2 clients (the fewest that aggregate; weights
   1/2).  The tensors have the real parameter shapes of ``BertForSequenceClassification``
   / ``GPT2ForSequenceClassification`` with 2 labels (built on the ``meta`` device, so no
   weights are allocated; largest tensors: the word embeddings, 23.4M and 38.6M entries).
   Each client's update is generated tensor by tensor on access, N(0, 1e-3^2) in fp32,
   from a seeded RNG (generation time is not counted: :class:`gibench.he.overhead._Timed`).  Every
   stage is measured for the whole model, nothing is extrapolated.  Each model runs in its
   own process (the two run side by side, one core each); the process reports its peak
   resident memory (``ru_maxrss``, exact), against the 4 GiB target.
2. ``throughput_1m``: one million entries fully encrypted, 3 clients: entries/s for the
   client (encryption + serialisation), the server (parse + add) and decryption, bytes per
   entry; plus the split of the client's time into CKKS encryption and serialisation.
3. ``lenet``: LeNet (88,648 entries) at ratios 0, 0.1, 0.3, 1 (random masks), 3 clients.

Times are CPU seconds of the measuring process (``clock="process"``: the work is
single-threaded, so this equals elapsed time on an idle core and stays meaningful when the
machine is shared); ``wall_s`` is the elapsed time of each full-model run.

Run alone: ``.venv/bin/python benchmarks/bench_he.py`` (prints the JSON; each full model
takes about 5 minutes of CPU, so about 6-8 minutes on 2 idle cores -- far longer on a
shared machine, whose CPU-time figures stay valid), or through
``benchmarks/run.py he`` (writes ``benchmarks/results/he.json``).  ``--bert N --gpt2 N``
replace the full models by flat updates of N entries (quick checks).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

FULL_SIZES = {"bert": 109_483_778, "gpt2": 124_441_344}
RSS_TARGET_BYTES = 4 * 2**30


# --------------------------------------------------------------------------- shapes
def model_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of BERT-base / GPT-2 with a 2-label classification head (the papers'
    109,483,778 and 124,441,344), built on the meta device (no memory)."""
    import torch
    import transformers as tf

    with torch.device("meta"):
        if name == "bert":
            model = tf.BertForSequenceClassification(tf.BertConfig(num_labels=2))
        elif name == "gpt2":
            model = tf.GPT2ForSequenceClassification(tf.GPT2Config(num_labels=2))
        else:
            raise ValueError(f"unknown model {name!r}")
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def flat_shapes(n_entries: int, tensor_entries: int = 4 * 2**20) -> dict[str, tuple[int, ...]]:
    """A flat update of ``n_entries`` split into tensors of ``tensor_entries``."""
    out, i = {}, 0
    while n_entries > 0:
        k = min(tensor_entries, n_entries)
        out[f"t{i:04d}"] = (k,)
        n_entries -= k
        i += 1
    return out


class SyntheticUpdate(Mapping):
    """A client update generated tensor by tensor on access: N(0, 1e-3^2) in fp32, seeded
    by (seed, client, tensor index).  ``meta`` answers without generating."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], seed: int, client: int):
        self.shapes, self.seed, self.client = dict(shapes), int(seed), int(client)
        self.index = {n: i for i, n in enumerate(self.shapes)}

    def meta(self, name):
        import torch

        return self.shapes[name], torch.float32

    def __getitem__(self, name):
        import torch

        rng = np.random.default_rng([self.seed, self.client, self.index[name]])
        size = int(np.prod(self.shapes[name]))
        vals = rng.standard_normal(size, dtype=np.float32) * np.float32(1e-3)
        return torch.from_numpy(vals.reshape(self.shapes[name]))

    def __iter__(self):
        return iter(self.shapes)

    def __len__(self):
        return len(self.shapes)


def _summary(r: dict) -> dict:
    keep = ("clock", "n_clients", "n_tensors", "n_entries", "n_encrypted", "n_ciphertexts", "keygen_s",
            "client_encrypt_s", "client_ckks_s", "client_plain_part_s", "server_aggregate_s",
            "server_ciphertext_sum_s", "decrypt_s", "he_round_s", "plain_client_s",
            "plain_server_s", "plain_round_s", "ciphertext_bytes", "message_bytes",
            "aggregate_ciphertext_bytes", "plain_update_bytes", "ratio_message_bytes_to_plain",
            "ratio_round_time_to_plain", "ciphertext_bytes_per_encrypted_entry",
            "max_abs_error_encrypted", "params", "tenseal", "device")
    out = {k: r[k] for k in keep}
    n = r["n_encrypted"]
    if n:
        out["client_entries_per_s"] = n / r["client_encrypt_s"]
        out["server_entries_per_s"] = n / r["server_aggregate_s"]
        out["decrypt_entries_per_s"] = n / r["decrypt_s"]
    out["ciphertext_gb_per_client"] = r["ciphertext_bytes"] / 1e9
    return out


# --------------------------------------------------------------------------- full models
def measure_full(name: str, n_entries: int | None = None, n_clients: int = 2, seed: int = 0,
                 batch_ciphertexts: int = 256, clock: str = "process") -> dict:
    """Full encryption (ratio 1) of a BERT/GPT-2-sized update, streamed, in this process."""
    import torch

    from gibench import he

    shapes = model_shapes(name) if n_entries is None else flat_shapes(n_entries)
    total = sum(int(np.prod(s)) for s in shapes.values())
    mask = {n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()}
    clients = [SyntheticUpdate(shapes, seed, c) for c in range(n_clients)]
    t0 = time.perf_counter()
    r = he.measure_overhead(clients, mask, he.HEParams(), batch_ciphertexts=batch_ciphertexts,
                            clock=clock)
    wall = time.perf_counter() - t0
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024     # KiB on Linux
    return {"model": name, "layout": "real parameter shapes" if n_entries is None else "flat",
            "n_entries_expected": FULL_SIZES.get(name) if n_entries is None else n_entries,
            "n_entries": total, **_summary(r), "wall_s": wall, "peak_rss_bytes": peak,
            "peak_rss_gib": peak / 2**30, "rss_target_gib": RSS_TARGET_BYTES / 2**30,
            "rss_within_target": peak <= RSS_TARGET_BYTES}


def _full_in_subprocesses(sizes: dict[str, int | None], n_clients: int, seed: int) -> dict:
    """One process per model, side by side; each prints its JSON result."""
    procs = {}
    for name, n in sizes.items():
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one-full", name,
               "--clients", str(n_clients), "--seed", str(seed)]
        if n is not None:
            cmd += ["--entries", str(n)]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, env=env)
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"full-model benchmark {name} failed ({p.returncode}):\n{stderr[-3000:]}")
        out[name] = json.loads(stdout.strip().splitlines()[-1])
    return out


# --------------------------------------------------------------------------- small runs
def _throughput(n_entries: int, seed: int) -> dict:
    import tenseal as ts
    import torch

    from gibench import he

    g = torch.Generator().manual_seed(seed)
    upd = {"w": torch.randn(n_entries, generator=g) * 1e-3}
    full = {"w": torch.ones(n_entries, dtype=torch.bool)}
    out = {"n_entries": n_entries,
           "full": _summary(he.measure_overhead(upd, full, he.HEParams(), n_clients=3, seed=seed))}
    out["bytes_per_entry"] = out["full"]["ciphertext_bytes"] / n_entries
    # split of the client's CKKS time into encryption and serialisation, one pass
    ctx = he.make_context()
    vals = upd["w"].double().numpy()
    slots = he.slot_count(ctx)
    t0 = time.process_time()
    vecs = [ts.ckks_vector(ctx, vals[i:i + slots]) for i in range(0, n_entries, slots)]
    t1 = time.process_time()
    cts = [v.serialize() for v in vecs]
    t2 = time.process_time()
    out.update({"encrypt_only_s": t1 - t0, "serialise_only_s": t2 - t1,
                "encrypt_only_entries_per_s": n_entries / (t1 - t0),
                "mean_ciphertext_bytes": sum(map(len, cts)) / len(cts)})
    part = {"w": torch.rand(n_entries, generator=g) < 0.1}
    out["ratio_0.1"] = _summary(he.measure_overhead(upd, part, he.HEParams(), n_clients=3, seed=seed))
    return out


def _lenet(seed: int, ratios=(0.0, 0.1, 0.3, 1.0)) -> dict:
    import torch

    from gibench import he
    from gibench.models import build_model

    model = build_model("lenet", 100, (3, 32, 32), seed=seed)
    g = torch.Generator().manual_seed(seed)
    upd = {n: torch.randn(p.shape, generator=g) * 1e-3 for n, p in model.named_parameters()}
    ctx = he.make_context()
    out = {}
    for r in ratios:
        mask = {n: torch.rand(t.shape, generator=g) < r for n, t in upd.items()}
        out[f"{r:.2f}"] = _summary(he.measure_overhead(upd, mask, he.HEParams(), n_clients=3,
                                                       seed=seed, ctx=ctx, repeats=3))
    return out


def run(full_sizes: dict[str, int | None] | None = None, throughput_entries: int = 1_000_000,
        n_clients_full: int = 2, seed: int = 0) -> dict:
    """``full_sizes``: model -> None (the real model's shapes) or a flat entry count."""
    from gibench import he

    sizes = {"bert": None, "gpt2": None} if full_sizes is None else full_sizes
    res: dict = {"device": he.device_string(), "cores": os.cpu_count()}
    t0 = time.perf_counter()
    res["full"] = _full_in_subprocesses(sizes, n_clients_full, seed)
    res["full_wall_s"] = time.perf_counter() - t0
    res["throughput_1m"] = _throughput(throughput_entries, seed)
    res["lenet"] = _lenet(seed)
    res["all_within_rss_target"] = all(v["rss_within_target"] for v in res["full"].values())
    res["full_sizes_match_papers"] = {k: v["n_entries"] == FULL_SIZES[k]
                                      for k, v in res["full"].items() if v["layout"] != "flat"}
    return res


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bert", type=int, default=None, help="flat entry count instead of BERT's shapes")
    ap.add_argument("--gpt2", type=int, default=None, help="flat entry count instead of GPT-2's shapes")
    ap.add_argument("--throughput-entries", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=2, help="clients of the full-model rounds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one-full", choices=sorted(FULL_SIZES), help=argparse.SUPPRESS)
    ap.add_argument("--entries", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one_full:
        print(json.dumps(measure_full(a.one_full, a.entries, a.clients, a.seed), default=str))
    else:
        print(json.dumps(run({"bert": a.bert, "gpt2": a.gpt2}, a.throughput_entries, a.clients,
                             a.seed), indent=2, default=str))
