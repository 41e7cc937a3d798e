"""The HE-overhead table and the cost-vs-protection figure of the selective-encryption study.

Input rows: one per (model, dataset, significance metric, ratio) from the ``overhead``
jobs (:mod:`gibench.studies.selective_encryption.jobs_overhead`, measured by :func:`gibench.he.measure_overhead`);
ratios 0 and 1 are measured once under metric ``any`` and shared by every metric.

* **Table** ``he_overhead`` (CSV tidy, one line per measured round; Markdown laid out per
  model): encrypted entries, ciphertexts, client time (mean per client), server
  aggregation time, decryption time, bytes one client sends, and three comparisons:
  against the plaintext update (4 B per entry, fp32) and the plaintext round, and against
  full encryption (ratio 1) of the same model.
* **Figure** ``he_cost_vs_protection``: one row per (model, dataset); panels: HE round time
  (client + server + decryption) vs the fraction of entries encrypted, bytes sent per client vs ratio (the plaintext
  update's size drawn as a line), and -- when the study ran attacks -- the protection
  metric vs ratio for each attack (mean over samples of the kept restart, threshold
  drawn).  The same x axis and colours, so cost and protection read side by side.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import io
from ..significance.selectors import SELECTORS
from .figures import FORMATS, _colors, _figure, _figure_legend, metric_label, save_figure, wrap_title
from .render import TableDoc, decimals_for, display, fmt_ratio
from .select import SHARED_METRIC, as_records, is_missing, modality_of, ratio_key
from .selective_encryption import (curve_means, evaluation, load_metric_rows, selected_rows,
                                   significance_metrics, study_config)

TABLE_NAME = "he_overhead"
FIGURE_NAME = "he_cost_vs_protection"
MB = 1e6

TIDY_COLUMNS = [
    "model", "dataset", "metric", "ratio", "n_entries", "n_encrypted", "ratio_encrypted",
    "n_ciphertexts", "n_clients", "repeats", "clock", "client_encrypt_s", "client_plain_part_s",
    "client_ckks_s", "server_aggregate_s", "server_ciphertext_sum_s", "server_plain_sum_s",
    "decrypt_s", "he_round_s", "plain_client_s", "plain_server_s", "plain_round_s",
    "ciphertext_bytes", "message_bytes", "plain_update_bytes",
    "ratio_message_bytes_to_plain", "ratio_client_time_to_plain",
    "ratio_server_time_to_plain", "ratio_round_time_to_plain",
    "fraction_of_full_he_time", "fraction_of_full_he_bytes", "max_abs_error_encrypted",
    "device", "tenseal", "poly_modulus_degree", "coeff_mod_bit_sizes", "global_scale_bits",
    "status",
]


def load_overhead_rows(path: Any) -> list[dict]:
    if isinstance(path, (str, Path)):
        table, _ = io.load_table(path)
        return table.to_pylist()
    return as_records(path)


def _sig(x: Any, sig: int = 3) -> str:
    """``x`` to ``sig`` significant figures, without exponents (0.00123, 12.3, 1234)."""
    if is_missing(x):
        return "–"
    x = float(x)
    if x == 0:
        return "0"
    return f"{x:,.{decimals_for(x, sig)}f}"


def _pct(x: Any) -> str:
    return "–" if is_missing(x) else f"{100 * float(x):.1f}%"


def _cases(cfg: Mapping[str, Any], rows: list[dict]) -> list[tuple[str, str]]:
    cases = [(c["model"], c["dataset"]) for c in cfg.get("cases") or []]
    for r in rows:
        if (r["model"], r["dataset"]) not in cases:
            cases.append((r["model"], r["dataset"]))
    return [c for c in cases if any((r["model"], r["dataset"]) == c for r in rows)]


def _ordered(cfg: Mapping[str, Any], rows: list[dict]) -> list[dict]:
    """Rows by case (config order), then ratio, then significance metric (config order)."""
    metrics = significance_metrics(cfg, rows)
    rank = {m: i for i, m in enumerate(metrics)}
    cases = _cases(cfg, rows)
    return sorted(rows, key=lambda r: (cases.index((r["model"], r["dataset"])), ratio_key(r["ratio"]),
                                       -1 if r["metric"] == SHARED_METRIC else rank.get(r["metric"], len(rank))))


def _full_rows(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["model"], r["dataset"]): r for r in rows
            if ratio_key(r["ratio"]) == 1.0 and r["metric"] == SHARED_METRIC}


def _one(rows: list[dict], key: str) -> list[Any]:
    return sorted({r.get(key) for r in rows if not is_missing(r.get(key))}, key=str)


def _caption(rows: list[dict]) -> tuple[str, list[str]]:
    devices = _one(rows, "device")
    ns = _one(rows, "n_clients")
    reps = _one(rows, "repeats")
    rings = _one(rows, "poly_modulus_degree")
    moduli = _one(rows, "coeff_mod_bit_sizes")
    scales = _one(rows, "global_scale_bits")
    tenseal = _one(rows, "tenseal")
    slots = _one(rows, "client_slots")
    mask_slots = _one(rows, "mask_slot")
    chunk = _one(rows, "chunk_slots")
    clocks = _one(rows, "clock") or ["wall"]
    clock_text = {"process": "CPU seconds of the job's process", "wall": "elapsed seconds"}
    title = (f"HE overhead of selective encryption: one FedAvg round of {'/'.join(map(str, ns))} clients, "
             f"CKKS (TenSEAL {'/'.join(tenseal)}) with ring N = {'/'.join(map(str, rings))}, coefficient "
             f"moduli [{'; '.join(moduli)}] bits, scale 2^{'/'.join(map(str, scales))}; measured on "
             f"{' and '.join(devices)}, one thread, median of {'/'.join(map(str, reps))} round(s); times are "
             f"{' / '.join(clock_text.get(c, str(c)) for c in clocks)}")
    err = max((float(r["max_abs_error_encrypted"]) for r in rows
               if not is_missing(r.get("max_abs_error_encrypted")) and r.get("n_encrypted")), default=None)
    notes = [
        "Ratio: fraction of all gradient entries encrypted (the mask of victim slot "
        f"{'/'.join(mask_slots)} under the significance metric; ratios 0 and 1 do not depend on "
        f"the metric and are measured once). Client i sends the gradient of victim slot "
        f"{'; '.join(slots)} (in client order).",
        f"Scheme (FedML-HE update rule, FedML's TenSEAL aggregator): each client multiplies its "
        f"update by its FedAvg weight (1/n) in plaintext, packs the masked entries, in mask order "
        f"across tensor boundaries, into SIMD ckks_vector ciphertexts of {'/'.join(map(str, chunk))} "
        f"slots and sends them with the unmasked entries in plaintext; the server (public key "
        f"only) adds the ciphertexts and the plaintext parts; the key holder decrypts the sums.",
        "Client (s): mean per client of weighting and serialising the plaintext part plus "
        "gathering, encrypting and serialising the masked entries. Server (s): parsing and adding "
        "the n clients' ciphertexts and plaintext parts. Decrypt (s): decrypting the summed "
        "ciphertexts. Reading the gradients from disk is not counted.",
        "Sent (MB): one client's message (header, mask bits, plaintext part, ciphertexts; 1 MB = "
        "10^6 B). × plain size: against the fp32 update (4 B per entry). × plain time: HE round "
        "(client + server + decrypt) against the plaintext round (clients weight and serialise "
        "their fp32 update, the server parses and adds them). vs full HE: HE round time / bytes "
        "sent against ratio 1 of the same model.",
    ]
    if err is not None:
        notes.append(f"Every round was checked: decrypted sums within {err:.1e} (max abs) of the "
                     f"float64 FedAvg of the encrypted entries.")
    return title, notes


def he_overhead_table(rows: Any, config: Mapping[str, Any]) -> TableDoc:
    cfg = study_config(config)
    records = [r for r in as_records(rows) if str(r.get("status", "ok")) == "ok"]
    full = _full_rows(records)
    tidy, body = [], []
    for r in _ordered(cfg, records):
        f = full.get((r["model"], r["dataset"]))
        frac_t = r["he_round_s"] / f["he_round_s"] if f and f["he_round_s"] else None
        frac_b = r["message_bytes"] / f["message_bytes"] if f and f["message_bytes"] else None
        rec = {c: r.get(c) for c in TIDY_COLUMNS}
        rec.update({"ratio": ratio_key(r["ratio"]), "fraction_of_full_he_time": frac_t,
                    "fraction_of_full_he_bytes": frac_b, "status": r.get("status", "ok")})
        tidy.append(rec)
        metric = "any (shared)" if r["metric"] == SHARED_METRIC else display(r["metric"])
        shown_ratio = "selector" if r["metric"] in SELECTORS else fmt_ratio(ratio_key(r["ratio"]))
        body.append([f"{display(r['model'])} ({display(r['dataset'])})", shown_ratio,
                     metric, f"{int(r['n_encrypted']):,} ({_pct(r['n_encrypted'] / r['n_entries'])})",
                     str(int(r["n_ciphertexts"])),
                     _sig(r["client_encrypt_s"]), _sig(r["server_aggregate_s"]), _sig(r["decrypt_s"]),
                     _sig(r["message_bytes"] / MB), _sig(r["ratio_message_bytes_to_plain"]),
                     _sig(r["ratio_round_time_to_plain"]), f"{_pct(frac_t)} / {_pct(frac_b)}"])
    title, notes = _caption(records) if records else ("HE overhead of selective encryption: no rows", [])
    header = ["Model", "Ratio", "Metric", "Encrypted", "Ciphertexts", "Client (s)", "Server (s)",
              "Decrypt (s)", "Sent (MB)", "× plain size", "× plain time", "vs full HE (time / size)"]
    return TableDoc(name=TABLE_NAME, title=title, header=header, body=body, tidy_columns=TIDY_COLUMNS,
                    tidy=tidy, notes=notes, group_columns=2)


def build_he_overhead_table(*, overhead_path: Any, config: Mapping[str, Any], out_dir: str | Path,
                            formats: Sequence[str] = ("csv", "md")) -> list[Path]:
    return he_overhead_table(load_overhead_rows(overhead_path), config).write(out_dir, formats)


# ------------------------------------------------------------------ figure

def _cost_curves(rows: list[dict], metrics: list[str], column: str) -> dict[str, tuple[list, list]]:
    """metric -> (encrypted fractions, values), the shared ratio-0/1 rows joined to every
    metric.  x is the fraction actually encrypted (= the ratio for top-k masks; a layer
    selector's own fraction)."""
    out = {}
    for m in metrics:
        pts = {r["n_encrypted"] / r["n_entries"]: float(r[column]) for r in rows
               if r["metric"] in (m, SHARED_METRIC) and not is_missing(r.get(column))}
        xs = sorted(pts)
        out[m] = (xs, [pts[x] for x in xs])
    return out


def plot_he_cost_vs_protection(overhead_rows: Any, metric_rows: Any, config: Mapping[str, Any], *,
                               out_dir: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    cfg = study_config(config)
    ov = [r for r in as_records(overhead_rows) if str(r.get("status", "ok")) == "ok"]
    prot_rows = selected_rows(metric_rows, cfg) if metric_rows else []
    attacks = list(dict.fromkeys([*(cfg.get("attacks") or {}), *sorted({r["attack"] for r in prot_rows})]))
    attacks = [a for a in attacks if any(r["attack"] == a for r in prot_rows)]
    cases = _cases(cfg, ov)
    metrics = significance_metrics(cfg, ov)
    colors = dict(zip(metrics, _colors(len(metrics))))
    # protection panels only where the attack ran on the case (IG on images, LAMP/DAGER on text):
    # a case's row has as many as it has attacks, the rest of the grid is left blank
    attacks_of = {c: [a for a in attacks if any((r["model"], r["dataset"], r["attack"]) == (*c, a) for r in prot_rows)]
                  for c in cases}
    ncols = 2 + max((len(v) for v in attacks_of.values()), default=0)
    nrows = max(1, len(cases))
    fig = _figure(3.5 * ncols, 3.0 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    ev = evaluation(cfg)
    for i, (model, dataset) in enumerate(cases):
        rows = [r for r in ov if (r["model"], r["dataset"]) == (model, dataset)]
        label = f"{display(model)} ({display(dataset)})"
        ax_t, ax_b = axes[i][0], axes[i][1]
        for m, (xs, ys) in _cost_curves(rows, metrics, "he_round_s").items():
            if xs:
                ax_t.plot(xs, ys, marker="o", ms=3, lw=1.3, color=colors[m], label=display(m))
        plain_t = [float(r["plain_round_s"]) for r in rows if not is_missing(r.get("plain_round_s"))]
        if plain_t:
            ax_t.axhline(float(np.median(plain_t)), color="k", ls=":", lw=0.8, label="plaintext round")
        ax_t.set_ylabel("HE round time (s)")
        ax_t.set_ylim(bottom=0)
        ax_t.set_title(f"{label}\nround time: client + server + decrypt", fontsize=8)
        for m, (xs, ys) in _cost_curves(rows, metrics, "message_bytes").items():
            if xs:
                ax_b.plot(xs, [y / MB for y in ys], marker="o", ms=3, lw=1.3, color=colors[m], label=display(m))
        plain_b = _one(rows, "plain_update_bytes")
        if plain_b:
            ax_b.axhline(float(plain_b[0]) / MB, color="k", ls=":", lw=0.8, label="plaintext update (fp32)")
        ax_b.set_ylabel("sent per client (MB)")
        ax_b.set_ylim(bottom=0)
        ax_b.set_title(f"{label}\nbytes one client sends", fontsize=8)
        for ax in axes[i][2 + len(attacks_of[(model, dataset)]):]:
            ax.set_axis_off()
        for j, attack in enumerate(attacks_of[(model, dataset)]):
            ax = axes[i][2 + j]
            crit = ev["protection"][modality_of(model)]
            sel = [r for r in prot_rows if (r["model"], r["dataset"], r["attack"]) == (model, dataset, attack)]
            drawn = False
            for m in metrics:
                curve = curve_means([r for r in sel if r["metric"] == m], crit["metric"])
                xs = [x for x in curve if curve[x]["n"] and math.isfinite(curve[x]["mean"])]
                if xs:
                    ax.plot(xs, [curve[x]["mean"] for x in xs], marker="o", ms=3, lw=1.3, color=colors[m],
                            label=display(m))
                    drawn = True
            ax.axhline(float(crit["threshold"]), color="k", ls="--", lw=0.8,
                       label=f"protected: {'≥' if crit['op'] == '>=' else '≤'} {float(crit['threshold']):g}")
            if not drawn:
                ax.text(0.5, 0.5, f"{display(crit['metric'])} unavailable", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8)
            n = len({r["slot"] for r in sel})
            ax.set_ylabel(metric_label(crit["metric"]))
            ax.set_title(f"{label}\nprotection against {display(attack)} (mean of {n} samples)", fontsize=8)
        for ax in axes[i][:2 + len(attacks_of[(model, dataset)])]:
            ax.set_xlabel("encryption ratio")
            ax.grid(alpha=0.3)
    _figure_legend(fig, axes)
    ns = "/".join(str(x) for x in _one(ov, "n_clients"))
    dev = " and ".join(_one(ov, "device"))
    note = ("" if attacks else "; cost only, protection not shown: "
            + ("the study has no attacks" if not cfg.get("attacks") else "no attack rows"))
    fig.suptitle(wrap_title(f"Selective CKKS encryption: measured cost of one FedAvg round ({ns} clients, {dev})\n"
                            f"vs encryption ratio{note}", 3.5 * ncols - 0.3, 9), fontsize=9)
    return save_figure(fig, out_dir, FIGURE_NAME, formats)


def build_he_cost_figure(*, overhead_path: Any, metrics_path: Any, config: Mapping[str, Any],
                         out_dir: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    metric_rows = load_metric_rows(metrics_path) if isinstance(metrics_path, (str, Path)) else metrics_path
    return plot_he_cost_vs_protection(load_overhead_rows(overhead_path), metric_rows, config,
                                      out_dir=out_dir, formats=formats)
