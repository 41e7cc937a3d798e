"""The overhead branch of the selective-encryption study: what real CKKS encryption of
each mask costs (issue 9).

One ``overhead`` job per (study, dataset, model, significance metric) measures, for every
configured ratio of that metric, one FedAvg round of ``n_clients`` clients with the masked
entries CKKS-encrypted (:func:`gibench.he.measure_overhead`: client encryption, server
aggregation, decryption, bytes, and the plaintext round as the baseline).  Ratios 0 and 1
give the same mask whatever the metric, so they are measured once under significance ``any``;
ratio 1 (full encryption) is always measured, as the reference.

Whose update, whose mask (stated in the table caption):

* the mask is the one the masks rule made for victim slot ``overhead.mask_slot`` (default
  0) -- FedML-HE uses one global mask for all clients, which the server knows;
* client ``i`` holds the real gradient of victim slot ``i mod victims`` (with fewer
  victims than clients some clients send the same update; CKKS's cost does not depend on
  the values, and the aggregate still checks a real sum).

Tensors are read from the gradient files one at a time (:class:`gibench.he.SafetensorsUpdate`)
and the ciphertexts streamed in batches, so memory stays bounded for BERT-size models.
Reading the files is not part of any measured time.  Every number is measured in this job
on the CPU it runs on (TenSEAL has no GPU path; the device string is in every row).

Outputs: ``results/overhead/<study>/<dataset>/<model>/<significance>.parquet`` (one row per
ratio), gathered into ``results/overhead/<study>/he_overhead.parquet``, then the table
``results/tables/<study>/he_overhead.{csv,md}`` and the figure
``results/figures/<study>/he_cost_vs_protection.{png,pdf}``.
"""
from __future__ import annotations

import resource
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import io, model_ids
from ...wildcards import fmt_slot, parse_ratio
from ...provenance import UNSEEDED_KEY, make_record
from ...pipeline import paths as P
from ...pipeline.cases import case_list, model_init
from ...pipeline.runner import say
from . import STUDY
from .paths import ALL_OVERHEAD, OVERHEAD

if TYPE_CHECKING:  # torch only in annotations: the DAG build imports this module without it
    import torch

TABLE_NAME = "he_overhead"
FIGURE_NAME = "he_cost_vs_protection"
FULL = 1.0


# ------------------------------------------------------------------ config

def overhead_config(config: dict, study: str = STUDY) -> dict | None:
    """The study's ``overhead`` block when it is present and enabled, else None."""
    st = (config.get("studies") or {}).get(study) or {}
    ov = st.get("overhead")
    if not ov or not ov.get("enabled", True):
        return None
    return ov


def overhead_metrics(config: dict, study: str = STUDY) -> list[str]:
    st = config["studies"][study]
    ov = overhead_config(config, study) or {}
    return list(ov.get("metrics") or st["significance"]["metrics"])


def overhead_ratios(config: dict, study: str = STUDY) -> list[float]:
    """The ratios measured: ``overhead.ratios`` (default: the significance grid), always
    with ratio 1 (full encryption) as the reference."""
    st = config["studies"][study]
    ov = overhead_config(config, study) or {}
    ratios = ov.get("ratios")
    if ratios is None:
        ratios = st["significance"]["ratios"]
    return sorted({round(float(r), 3) for r in ratios} | {FULL})


def ratios_for(config: dict, study: str, metric: str) -> list[float]:
    """Ratios measured under ``metric``: 0/1 under ``any``, the interior ones otherwise; a
    layer selector (``attn``, ``onefifth_i``) makes the same mask at every ratio, so it is
    measured once, at the smallest interior ratio (the rows give the real fraction)."""
    from ...significance.selectors import SELECTORS

    rs = overhead_ratios(config, study)
    if metric == P.ANY_METRIC:
        return [r for r in rs if r in (0.0, 1.0)]
    inner = [r for r in rs if 0.0 < r < 1.0]
    return inner[:1] if metric in SELECTORS else inner


def client_slots(config: dict, study: str = STUDY) -> list[str]:
    """Victim slot whose gradient client i sends: ``i mod victims``."""
    st = config["studies"][study]
    ov = overhead_config(config, study) or {}
    return [fmt_slot(i % int(st["victims"])) for i in range(int(ov.get("n_clients", 3)))]


def overhead_jobs(config: dict, study: str = STUDY):
    """(study, dataset, model, metric) of every overhead job the config asks for."""
    if overhead_config(config, study) is None:
        return
    st = config["studies"][study]
    models = (overhead_config(config, study) or {}).get("models")
    metrics = [m for m in overhead_metrics(config, study) if ratios_for(config, study, m)]
    for dataset, model in case_list(st):      # one model id per init (``lenet@dlg_uniform``)
        if models is not None and not model_ids.matches_any(models, model_ids.base(model), model_init(st, model)):
            continue
        for metric in metrics + [P.ANY_METRIC]:
            if ratios_for(config, study, metric):
                yield study, dataset, model, metric


def overhead_files(config: dict, study: str = STUDY) -> list[str]:
    return [P.fmt(OVERHEAD, study=s, dataset=d, model=m, significance=k)
            for s, d, m, k in overhead_jobs(config, study)]


def overhead_inputs(config: dict, wc: Any) -> dict:
    """The masks (one per ratio of this metric, from slot ``mask_slot``) and the clients'
    gradient files."""
    ov = overhead_config(config, wc.study)
    if ov is None:
        raise ValueError(f"studies.{wc.study}.overhead is absent or disabled")
    slot = fmt_slot(int(ov.get("mask_slot", 0)))
    base = dict(study=wc.study, dataset=wc.dataset, model=wc.model)
    return {
        "masks": [P.fmt(P.MASK, **base, slot=slot, significance=wc.significance, ratio=r)
                  for r in ratios_for(config, wc.study, wc.significance)],
        "gradients": [P.fmt(P.GRADIENT, **base, slot=s)
                      for s in dict.fromkeys(client_slots(config, wc.study))],
    }


def overhead_settings(config: dict, study: str) -> dict:
    """What an overhead job depends on in the config (a change re-runs it)."""
    ov = overhead_config(config, study) or {}
    return {"overhead": ov, "client_slots": client_slots(config, study)}


def table_inputs(config: dict, study: str) -> dict:
    return {"overhead": P.fmt(ALL_OVERHEAD, study=study)}


def figure_inputs(config: dict, study: str) -> dict:
    inputs = {"overhead": P.fmt(ALL_OVERHEAD, study=study)}
    if config["studies"][study].get("attacks"):
        inputs["metrics"] = P.fmt(P.ALL_METRICS, study=study)
    return inputs


def overhead_targets(config: dict, study: str = STUDY) -> list[str]:
    """The table and the figure (what ``rule all`` asks for), if the branch is enabled."""
    if overhead_config(config, study) is None:
        return []
    return ([P.fmt(P.TABLE, study=study, table=TABLE_NAME, ext=e) for e in ("csv", "md")]
            + [P.fmt(P.FIGURE, study=study, figure=FIGURE_NAME, ext=e) for e in ("png", "pdf")])


# ------------------------------------------------------------------ the job

def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024   # Linux: KiB


def _row(wc: dict, ratio: float, r: dict, ov: dict, slots: list[str], mask_slot: str) -> dict:
    p = r["params"]
    keep = ("n_clients", "repeats", "clock", "n_tensors", "n_entries", "n_encrypted", "ratio_encrypted",
            "chunk_slots", "n_ciphertexts", "slot_utilisation", "public_context_bytes",
            "client_encrypt_s", "client_plain_part_s", "client_ckks_s", "ciphertext_bytes",
            "plain_part_bytes", "message_bytes", "aggregate_ciphertext_bytes",
            "server_aggregate_s", "server_ciphertext_sum_s", "server_plain_sum_s", "decrypt_s",
            "plain_update_bytes", "plain_client_s", "plain_server_s", "he_round_s",
            "plain_round_s", "ciphertext_bytes_per_encrypted_entry",
            "ratio_ciphertext_bytes_to_plain", "ratio_message_bytes_to_plain",
            "ratio_client_time_to_plain", "ratio_server_time_to_plain",
            "ratio_round_time_to_plain", "max_abs_error_encrypted", "max_abs_error_plain_part")
    row = {"study": wc["study"], "dataset": wc["dataset"], "model": wc["model"],
           "metric": wc["significance"], "ratio": float(ratio), "mask_slot": mask_slot,
           "client_slots": ",".join(slots), "device": r["device"], "tenseal": r["tenseal"],
           "poly_modulus_degree": int(p["poly_modulus_degree"]),
           "coeff_mod_bit_sizes": ",".join(str(b) for b in p["coeff_mod_bit_sizes"]),
           "global_scale_bits": int(p["global_scale_bits"]),
           "batch_ciphertexts": int(ov.get("batch_ciphertexts", 256))}
    for k in keep:
        v = r[k]
        row[k] = float(v) if isinstance(v, float) else v
    row["status"] = "ok"
    return row


def overhead_job(smk: Any, device: torch.device) -> dict:
    from ... import he
    from ...masks import load_mask

    wc = dict(smk.wildcards)
    cfg = smk.config
    ov = overhead_config(cfg, wc["study"])
    if ov is None:
        raise ValueError(f"studies.{wc['study']}.overhead is absent or disabled")
    params = he.HEParams.from_dict(ov.get("ckks") or {})
    slots = client_slots(cfg, wc["study"])
    mask_slot = fmt_slot(int(ov.get("mask_slot", 0)))
    by_slot = {Path(p).stem: he.SafetensorsUpdate(p) for p in smk.input.gradients}
    clients = [by_slot[s] for s in slots]
    now = he.CLOCKS[ov.get("clock", "process")]
    t0 = now()
    ctx = he.make_context(params)
    keygen_s = now() - t0
    rows = []
    for path in smk.input.masks:
        ratio = parse_ratio(Path(path).name.removesuffix(".safetensors"))
        mask, _ = load_mask(path)
        r = he.measure_overhead(clients, mask, params, ctx=ctx, repeats=int(ov.get("repeats", 1)),
                                batch_ciphertexts=int(ov.get("batch_ciphertexts", 256)),
                                clock=ov.get("clock", "process"))
        row = _row(wc, ratio, r, ov, slots, mask_slot)
        row["keygen_s"] = keygen_s
        rows.append(row)
        say(f"overhead {wc['model']}/{wc['significance']} r={ratio:.3f}: {r['n_encrypted']:,} of "
            f"{r['n_entries']:,} entries in {r['n_ciphertexts']} ciphertexts; client "
            f"{r['client_encrypt_s']:.3f} s, server {r['server_aggregate_s']:.3f} s, decrypt "
            f"{r['decrypt_s']:.3f} s, {r['message_bytes'] / 1e6:.2f} MB sent "
            f"({r['ratio_message_bytes_to_plain']:.2f}x plain)")
    peak = _peak_rss_bytes()
    for row in rows:
        row["job_peak_rss_bytes"] = peak
    rec = make_record(rule=smk.rule, wildcards=wc, params=overhead_settings(cfg, wc["study"]),
                      config=cfg, inputs=smk.input, outputs=smk.output, device="cpu",
                      extra={"he": {"params": params.to_dict(), "device": he.device_string(),
                                    "tenseal": rows[0]["tenseal"] if rows else None,
                                    "measured": "one FedAvg round per ratio, see gibench.he.measure_overhead"},
                             UNSEEDED_KEY: list(he.UNSEEDED_COLUMNS)})
    io.save_table(smk.output[0], rows, rec)
    return {"rows": len(rows), "peak_rss_bytes": peak}


def he_table_job(smk: Any, device: torch.device) -> dict:
    from ...tables.he_overhead import build_he_overhead_table
    from ...tables.render import table_formats

    cfg = smk.config["studies"][smk.wildcards.study]
    written = build_he_overhead_table(overhead_path=smk.input.overhead, config=cfg,
                                      out_dir=Path(smk.output.csv).parent, formats=table_formats(smk.output))
    say(f"table {smk.wildcards.study}/{TABLE_NAME}: {', '.join(str(p) for p in written)}")
    return {"written": [str(p) for p in written]}


def he_figure_job(smk: Any, device: torch.device) -> dict:
    from ...tables.he_overhead import build_he_cost_figure

    cfg = smk.config["studies"][smk.wildcards.study]
    written = build_he_cost_figure(overhead_path=smk.input.overhead,
                                   metrics_path=smk.input.get("metrics"), config=cfg,
                                   out_dir=Path(smk.output.png).parent)
    say(f"figure {smk.wildcards.study}/{FIGURE_NAME}: {len(written)} files")
    return {"written": [str(p) for p in written]}
