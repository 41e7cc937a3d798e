"""LAMP cost on this machine: seconds per continuous step (one double-backward gradient
match + the Adam update) and per candidate evaluation (initialisation / reordering rounds),
and the peak memory of a short LAMP run, for full-size BERT-base and GPT-2 with random
weights (the paper's models; pretrained weights change values, not cost).

Each model is measured in its own subprocess so that its peak resident memory
(``ru_maxrss``: weights, gradients, the double-backward graph and the vmapped candidate
evaluations) is its own.  Sentence: 16 tokens (a typical CoLA/SST-2 length), batch 1.

Target (reported, never asserted): peak memory <= 8 GiB per model.

``python benchmarks/bench_lamp.py`` prints the JSON; ``python benchmarks/run.py lamp`` writes it
to ``benchmarks/results/lamp.json``.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

TOKENS = 16
STEPS = 5                 # timed continuous steps (after one warm-up)
PEAK_TARGET_GIB = 8.0


def measure(family: str) -> dict:
    """Run inside a fresh process: build, time, and report this process's peak RSS."""
    import torch
    from torch.nn import functional as F

    from gibench.attacks import lamp as L
    from gibench.datasets.text import load_tokenizer
    from gibench.gradient import client_gradient
    from gibench.models import build_model, count_parameters
    from gibench.models.text import PAD_ID, BoundTextModel, pad_batch, text_model_info

    t0 = time.perf_counter()
    model = build_model(family, 2, None, seed=0, size="base")
    build_s = time.perf_counter() - t0
    tok = load_tokenizer(family, "bundled", ROOT / "resources")
    text = "the quick brown fox jumps over the lazy dog while the cat sleeps on a warm mat"
    ids = tok(text)["input_ids"][:TOKENS]
    if family == "bert":
        ids = ids[:TOKENS - 1] + [tok.sep_token_id]
    ids_t, mask = pad_batch([ids], PAD_ID[family])
    y = torch.tensor([1])
    grads = client_gradient(BoundTextModel(model, mask), ids_t, y)
    info = text_model_info(model, tok)
    dist = L.MaskedGradDistance(model, grads, None, "cos", 0.01, {info["embedding_param"]}, torch.device("cpu"))
    attn = torch.ones(1, len(ids), dtype=torch.long)
    d = info["hidden_size"]
    z = (0.01 * torch.randn(1, len(ids), d)).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.01)

    def step() -> None:
        logits = model(inputs_embeds=z, attention_mask=attn)
        dummy = torch.autograd.grad(F.cross_entropy(logits, y), dist.params, create_graph=True, allow_unused=True)
        loss = dist(dummy) + (z.norm(dim=-1).mean() - 1.0) ** 2
        z.grad, = torch.autograd.grad(loss, [z])
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(STEPS):
        step()
    step_s = (time.perf_counter() - t) / STEPS
    chunk = L.eval_chunk_for(dist, int(L.DEFAULTS["eval_chunk"]), float(L.DEFAULTS["eval_memory_mb"]))
    ev = L._Evaluator(model, dist, attn, y, chunk=chunk)
    cands = 0.01 * torch.randn(max(4, chunk), 1, len(ids), d)
    ev.many(cands[:2])
    t = time.perf_counter()
    ev.many(cands)
    eval_s = (time.perf_counter() - t) / cands.shape[0]
    # a short end-to-end run with the paper's chunking (init candidates, steps, one reordering round)
    cfg = {"n_steps": 3, "init_candidates": 16, "init_permutations": 16, "swap_every": 2, "swap_burnin": 0.0,
           "swap_candidates": 16}
    t = time.perf_counter()
    res = L.run_lamp(model, grads, None, token_len=len(ids), labels=[1], tokenizer=tok, cfg=cfg, seed=0)
    run_s = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    paper_evals = 2000 + 500 + 500 + 24 * 200      # steps + init candidates + permutations + 24 rounds x 200
    return {"family": family, "parameters": count_parameters(model), "tokens": len(ids),
            "threads": torch.get_num_threads(), "build_s": round(build_s, 2),
            "s_per_step": round(step_s, 4), "s_per_candidate_eval": round(eval_s, 4), "eval_chunk": chunk,
            "vmap_used": ev.vmap_ok, "short_run_s": round(run_s, 2), "short_run_status": res.status,
            "peak_rss_gib": round(peak / 2 ** 30, 3),
            "estimated_paper_scale_s_per_sentence": round(2000 * step_s + (paper_evals - 2000) * eval_s, 1)}


def run() -> dict:
    out = {"tokens": TOKENS, "target_peak_gib": PEAK_TARGET_GIB, "cases": []}
    for family in ("bert", "gpt2"):
        proc = subprocess.run([sys.executable, __file__, "--one", family], capture_output=True, text=True,
                              cwd=str(ROOT))
        if proc.returncode != 0:
            out["cases"].append({"family": family, "error": proc.stderr[-2000:]})
            continue
        out["cases"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    ok = [c for c in out["cases"] if "peak_rss_gib" in c]
    out["max_peak_rss_gib"] = max((c["peak_rss_gib"] for c in ok), default=None)
    out["meets_target"] = bool(ok) and len(ok) == len(out["cases"]) and out["max_peak_rss_gib"] <= PEAK_TARGET_GIB
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2])))
    else:
        print(json.dumps(run(), indent=2))
