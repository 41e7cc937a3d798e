"""The overhead branch (issue 9): config checks, and a real snakemake micro run that
produces the HE-overhead table and the cost-vs-protection figure."""
from __future__ import annotations

import copy
import csv
import math

import pytest

from gibench import config as gconfig
from gibench import io
from gibench.pipeline import targets as T
from gibench.studies.selective_encryption import jobs_overhead as OV
from workflow_helpers import MICRO, ROOT, run_snakemake, write_config

LENET = 88_648                     # LeNet's parameter count (DLG / FedML-HE LeNet on CIFAR-100)
SLOTS = 8192 // 2                  # CKKS slots per ciphertext at ring N = 8192
CT_MIN_BYTES = 2 * 8192 * 140 // 8          # 2 polys x N coeffs x 140 bits of data modulus
CT_MAX_BYTES = 2 * 8192 * 3 * 8 + 4096      # as uncompressed 64-bit words, + header
TABLE_MD = "results/tables/selective_encryption/he_overhead.md"
TABLE_CSV = "results/tables/selective_encryption/he_overhead.csv"
FIG = "results/figures/selective_encryption/he_cost_vs_protection"


def micro(overhead: dict | None = None) -> dict:
    cfg = copy.deepcopy(MICRO)
    se = cfg["studies"]["selective_encryption"]
    se["significance"] = {"metrics": ["grad", "random"], "ratios": [0.0, 0.1, 0.5]}
    se["overhead"] = {"n_clients": 2} if overhead is None else overhead
    cfg.setdefault("resources_dir", str(ROOT / "resources"))
    cfg.setdefault("hub_dir", "/nonexistent")
    return cfg


def validate(cfg: dict) -> dict:
    return gconfig.validate(cfg, ROOT / "config/schema/config.schema.yaml")


# ------------------------------------------------------------------ config (fast)

def test_overhead_defaults_and_targets():
    cfg = validate(micro())
    ov = cfg["studies"]["selective_encryption"]["overhead"]
    assert ov["enabled"] is True and ov["n_clients"] == 2 and ov["mask_slot"] == 0
    assert ov["ckks"] == {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [60, 40, 40, 60],
                          "global_scale_bits": 52}        # FedML's TenSEAL context
    assert OV.overhead_ratios(cfg) == [0.0, 0.1, 0.5, 1.0]   # 1.0 always: the full-HE reference
    jobs = list(OV.overhead_jobs(cfg))
    assert [j[3] for j in jobs] == ["grad", "random", "any"]
    assert OV.client_slots(cfg) == ["s000", "s000"]           # 1 victim slot, 2 clients
    study = "selective_encryption"
    assert OV.ratios_for(cfg, study, "grad") == [0.1, 0.5]
    assert OV.ratios_for(cfg, study, "any") == [0.0, 1.0]
    assert OV.ratios_for(cfg, study, "attn") == [0.1]           # a selector: one mask, measured once
    targets = T.all_targets(cfg)
    assert TABLE_MD in targets and FIG + ".png" in targets
    assert list(OV.overhead_jobs(validate(micro({"models": ["lenet"]})))) == jobs
    off = validate(micro({"enabled": False}))
    assert TABLE_MD not in T.all_targets(off)
    none = micro()
    del none["studies"]["selective_encryption"]["overhead"]
    assert TABLE_MD not in T.all_targets(validate(none))


@pytest.mark.parametrize("overhead, message", [
    ({"ratios": [0.2]}, "overhead.ratios[0]: no mask is made for ratio 0.2"),
    ({"metrics": ["sens"]}, "overhead.metrics[0]: 'sens' is not one of significance.metrics"),
    ({"mask_slot": 3}, "overhead.mask_slot: 3 but there are only 1 victim slots"),
    ({"models": ["cnn"]}, "overhead.models[0]: 'cnn' is not the model of any case"),
    ({"ckks": {"coeff_mod_bit_sizes": [30, 30], "global_scale_bits": 40}},
     "overhead.ckks: global_scale_bits=40 must be in [1, 30)"),
    ({"n_clients": 0}, "n_clients"),
    ({"clients": 3}, "clients"),
])
def test_bad_overhead_config_names_the_key(overhead, message):
    with pytest.raises(gconfig.ConfigError, match="overhead") as e:
        validate(micro(overhead))
    assert message in str(e.value)


# ------------------------------------------------------------------ table from measured rows (fast)

def test_table_from_measured_rounds(tmp_path):
    """Rows measured on a small update: order, shared ratio-0/1 rows, comparisons with full HE."""
    import torch

    from gibench import he
    from gibench.tables.he_overhead import TIDY_COLUMNS, he_overhead_table

    g = torch.Generator().manual_seed(0)
    shapes = {"a": (64, 100), "b": (100,), "c": (30, 300)}        # 15,500 entries
    clients = [{n: torch.randn(s, generator=g) for n, s in shapes.items()} for _ in range(2)]
    ctx = he.make_context()
    cases = [("any", 0.0), ("grad", 0.5), ("attn", 0.1), ("any", 1.0)]
    rows = []
    for metric, ratio in cases:
        bits = {n: torch.rand(s, generator=g) < ratio for n, s in shapes.items()}
        if metric == "attn":                               # a selector: one whole tensor
            bits = {n: torch.full(s, n == "c", dtype=torch.bool) for n, s in shapes.items()}
        r = he.measure_overhead(clients, bits, ctx=ctx)
        wc = {"study": "selective_encryption", "dataset": "cifar100", "model": "lenet", "significance": metric}
        rows.append(OV._row(wc, ratio, r, {}, ["s000", "s001"], "s000"))
    cfg = {"cases": [{"model": "lenet", "dataset": "cifar100"}],
           "significance": {"metrics": ["grad", "attn"]}}
    doc = he_overhead_table(list(reversed(rows)), cfg)
    assert [(t["metric"], t["ratio"]) for t in doc.tidy] == [("any", 0.0), ("attn", 0.1), ("grad", 0.5),
                                                            ("any", 1.0)]
    full = rows[-1]
    for t, r in zip(doc.tidy, [rows[0], rows[2], rows[1], rows[3]]):
        assert t["fraction_of_full_he_bytes"] == pytest.approx(r["message_bytes"] / full["message_bytes"])
        assert t["fraction_of_full_he_time"] == pytest.approx(r["he_round_s"] / full["he_round_s"])
    assert doc.tidy[-1]["fraction_of_full_he_time"] == 1.0
    assert doc.tidy[1]["n_encrypted"] == 30 * 300                 # the selector's own fraction
    assert doc.body[1][1] == "selector" and doc.body[1][3] == "9,000 (58.1%)"
    assert doc.body[0][2] == "any (shared)" and doc.body[0][4] == "0"
    assert set(doc.tidy_columns) == set(TIDY_COLUMNS)
    md = doc.to_markdown()
    assert "2 clients" in md and "CPU seconds of the job's process" in md
    paths = doc.write(tmp_path)
    assert [p.name for p in paths] == ["he_overhead.csv", "he_overhead.md"]


# ------------------------------------------------------------------ micro run (slow)

@pytest.mark.slow
def test_micro_run_produces_the_overhead_table_and_figure(tmp_path):
    path = write_config(tmp_path, micro())
    run_snakemake(tmp_path, path, TABLE_MD, FIG + ".png")
    for f in (TABLE_MD, TABLE_CSV, FIG + ".png", FIG + ".pdf"):
        assert (tmp_path / f).stat().st_size > 0, f

    with open(tmp_path / TABLE_CSV) as fh:
        rows = list(csv.DictReader(fh))
    got = {(r["metric"], float(r["ratio"])) for r in rows}
    assert got == {("any", 0.0), ("grad", 0.1), ("random", 0.1), ("grad", 0.5), ("random", 0.5),
                   ("any", 1.0)}
    for r in rows:
        ratio = float(r["ratio"])
        k = math.floor(ratio * LENET + 0.5)           # global top-k, half-up rounding
        assert int(r["n_entries"]) == LENET and int(r["n_encrypted"]) == k
        assert int(r["n_ciphertexts"]) == math.ceil(k / SLOTS)
        assert int(r["n_clients"]) == 2 and int(r["plain_update_bytes"]) == 4 * LENET
        if k:
            per_ct = int(r["ciphertext_bytes"]) / int(r["n_ciphertexts"])
            assert CT_MIN_BYTES <= per_ct <= CT_MAX_BYTES
            assert float(r["max_abs_error_encrypted"]) <= 1e-9
            assert float(r["client_encrypt_s"]) > 0 and float(r["decrypt_s"]) > 0
        else:
            assert int(r["ciphertext_bytes"]) == 0
        # what a client sends: the fp32 unmasked entries + ciphertexts + small header/mask bits
        floor_bytes = 4 * (LENET - k) + int(r["ciphertext_bytes"])
        assert floor_bytes < int(r["message_bytes"]) <= floor_bytes + LENET // 8 + 8 * int(r["n_ciphertexts"]) + 4096
        assert r["device"].startswith("cpu: ")
    full = next(r for r in rows if float(r["ratio"]) == 1.0)
    assert float(full["fraction_of_full_he_time"]) == 1.0
    assert float(full["ratio_message_bytes_to_plain"]) > 14     # ~16-20x fp32 (reference notes)

    md = (tmp_path / TABLE_MD).read_text()
    assert "one FedAvg round of 2 clients" in md and "ring N = 8192" in md and "2^52" in md
    assert "measured on cpu: " in md and "| LeNet (CIFAR-100) |" in md

    one = tmp_path / "results/overhead/selective_encryption/cifar100/lenet/grad.parquet"
    table, rec = io.load_table(one)
    assert rec["rule"] == "overhead" and rec["wildcards"]["significance"] == "grad"
    assert rec["he"]["params"]["global_scale_bits"] == 52
    assert any(p.endswith("masks/selective_encryption/cifar100/lenet/s000/grad/r0.100.safetensors")
               for p in rec["inputs"])
    assert table.num_rows == 2
