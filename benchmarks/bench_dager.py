"""DAGER speed on this machine: the layer-1 vocabulary scan per position and end-to-end
recovery of 16-token sentences (batch sizes 1 and 4) on a random-init, full-width GPT-2
(768 wide, 12 heads, vocab 50257) with 2 blocks and with the full 12 blocks.

Targets (checked and reported, never asserted): layer-1 scan ≤ 2 s per position,
end-to-end ≤ 60 s per 16-token sentence.

``python benchmarks/bench_dager.py`` prints the JSON; ``python benchmarks/run.py dager``
writes it to ``benchmarks/results/dager.json``.
"""
from __future__ import annotations

import csv
import inspect
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from gibench.attacks import dager as D  # noqa: E402

#: the bundled text resources of this repository (tokenizer, CoLA and SST-2 dev sentences)
DATA_DIRS = [HERE.parent / "resources" / "text"]
EOS = 50256
TOKENS = 16
L1_TARGET_S = 2.0
E2E_TARGET_S = 60.0


def _find(rel: str) -> Path:
    for d in DATA_DIRS:
        if (d / rel).exists():
            return d / rel
    raise FileNotFoundError(f"{rel} not found in {[str(d) for d in DATA_DIRS]}")


def _tokenizer():
    import transformers

    enc, merges = _find("gpt2_tokenizer/encoder.json"), _find("gpt2_tokenizer/vocab.bpe")
    cls = transformers.GPT2TokenizerFast
    if "vocab_file" in inspect.signature(cls.__init__).parameters:
        return cls(vocab_file=str(enc), merges_file=str(merges))
    return cls(vocab=str(enc), merges=str(merges))


def _sentences(tok, n: int) -> list[list[int]]:
    """The first ``n`` CoLA / SST-2 dev sentences (alternating) with ≥ 16 tokens, cut to 16."""
    with open(_find("cola/in_domain_dev.tsv"), encoding="utf-8") as f:
        cola = [r[3] for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    with open(_find("sst2/dev.tsv"), encoding="utf-8") as f:
        sst = [r[0].strip() for r in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]
    pools = [[t for t in (tok(s)["input_ids"] for s in src) if len(t) >= TOKENS] for src in (cola, sst)]
    out = []
    i = 0
    while len(out) < n:
        out.append(pools[i % 2][i // 2][:TOKENS])
        i += 1
    return out


def _model(n_layer: int):
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=n_layer, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024,
                                  num_labels=2, pad_token_id=EOS)
    return transformers.GPT2ForSequenceClassification(cfg).eval()


def _gradient(model, seqs):
    T = max(map(len, seqs))
    x = torch.full((len(seqs), T), EOS, dtype=torch.long)
    am = torch.zeros_like(x)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = torch.tensor(s)
        am[i, :len(s)] = 1
    y = torch.arange(len(seqs)) % 2
    out = model(input_ids=x, attention_mask=am, labels=y)
    names, params = zip(*model.named_parameters())
    return dict(zip(names, torch.autograd.grad(out.loss, params)))


def _scan_timing(model, dims=(16, 64), positions=5) -> dict:
    tr = model.transformer
    out = {}
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for r in dims:
            R = torch.linalg.qr(torch.randn(768, r, generator=g, dtype=torch.float64))[0].T.contiguous()
            span = D._Span(R)
            D._vocab_scan(tr, span, 0, int(D.DEFAULTS["vocab_chunk"]), time.time() + 600)  # warm-up
            t = time.perf_counter()
            for p in range(positions):
                D._vocab_scan(tr, span, p, int(D.DEFAULTS["vocab_chunk"]), time.time() + 600)
            out[f"span_dim_{r}"] = round((time.perf_counter() - t) / positions, 4)
    return out


def run() -> dict:
    tok = _tokenizer()
    sents = _sentences(tok, 4)
    results: dict = {"tokens_per_sentence": TOKENS, "threads": torch.get_num_threads(),
                     "targets": {"l1_scan_s_per_position": L1_TARGET_S, "end_to_end_s_per_sentence": E2E_TARGET_S},
                     "cases": []}
    for n_layer in (2, 12):
        t = time.perf_counter()
        model = _model(n_layer)
        build = time.perf_counter() - t
        results[f"l1_scan_s_per_position_{n_layer}_blocks"] = _scan_timing(model)
        for B in (1, 4):
            seqs = sents[:B]
            grads = _gradient(model, seqs)
            t = time.perf_counter()
            res = D.run(model, grads, {}, tokenizer=tok, cfg={"batch_size": B}, seed=0)
            total = time.perf_counter() - t
            info = res.info
            results["cases"].append({
                "n_layer": n_layer, "batch_size": B, "status": res.status,
                "exact": sorted(res.sequences) == sorted(seqs),
                "B_estimate": info.get("B"), "distinct_prefixes": len({tuple(s[:i + 1]) for s in seqs for i in range(len(s))}),
                "model_build_s": round(build, 2),
                "end_to_end_s": round(total, 3), "end_to_end_s_per_sentence": round(total / B, 3),
                "rank_s": info.get("rank_seconds"), "l1_s_total": info.get("l1_seconds"),
                "l1_s_per_position": info.get("l1_seconds_per_position"), "l2_s_total": info.get("l2_seconds"),
                "positions_scanned": len(info.get("l1_candidates_per_position", [])),
                "l1_candidates_per_position": info.get("l1_candidates_per_position"),
            })
        del model
    cases = results["cases"]
    l1 = [v for k, d in results.items() if k.startswith("l1_scan_s_per_position_") for v in d.values()]
    l1 += [c["l1_s_per_position"] for c in cases if c["l1_s_per_position"] is not None]
    results["max_l1_scan_s_per_position"] = max(l1)
    results["max_end_to_end_s_per_sentence"] = max(c["end_to_end_s_per_sentence"] for c in cases)
    results["meets_targets"] = (results["max_l1_scan_s_per_position"] <= L1_TARGET_S
                                and results["max_end_to_end_s_per_sentence"] <= E2E_TARGET_S)
    results["all_exact"] = all(c["exact"] for c in cases)
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
