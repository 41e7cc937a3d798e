"""Before/after of the metric-parity change (issue 19, items 1-3) on reconstructions already on
disk: every metrics job of a finished run is re-run from its own record (the pipeline's job
functions, :func:`gibench.pipeline.replay.smk_from_record`) with today's definitions, and the
values are set beside the run's own (old) rows.

    python scripts/metrics_before_after.py RUN_DIR [--out before_after.md] [--examples 3]

RUN_DIR holds ``results/`` and the ``config/config.yaml`` the run used.  Nothing in RUN_DIR is
written (new rows go to a temporary directory).  Per study:

- selective encryption (image rows): LPIPS (alex v0.1, bundled backbone, [-1, 1] input) --
  before: what the run stored (``unavailable`` offline); after: the value now computed.
- stochastic defenses: SSIM before = the run's stored value (full-map mean, torchmetrics
  >= 1.0), after = the CVB code's (torchmetrics 0.11.4, centre of the map) and the ASR each
  implies; the re-run's full-map value is checked equal to the stored one.
- concealed samples: LPIPS (alex v0.1) with [-1, 1] input vs DCS-2's unmapped [0, 1] input,
  on every dataset large enough for AlexNet (the demo tables compute LPIPS only for
  TinyImageNet, as DCS-2 does; here it is computed on whatever the run has).
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from gibench import config as C  # noqa: E402
from gibench import io  # noqa: E402
from gibench.pipeline.replay import smk_from_record  # noqa: E402


def _mean(vals: list[Any]) -> float | None:
    v = [float(x) for x in vals if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(v) / len(v) if v else None


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def rerun(path: Path, job, cfg: dict, tmp: Path, extra_inputs: dict | None = None) -> list[dict]:
    """Re-run the metrics job that made ``path`` with ``cfg``; its new rows."""
    _, rec = io.load_table(path)
    rec = copy.deepcopy(rec)
    out = tmp / f"{len(list(tmp.iterdir()))}.parquet"
    rec["output_files"] = {"_0": str(out)}
    rec["input_files"] = {**(rec.get("input_files") or {}), **(extra_inputs or {})}
    rec["log_files"] = []
    smk = smk_from_record(rec, cfg)
    import torch

    job(smk, torch.device("cpu"))
    return io.load_table(out)[0].to_pylist()


def metric_files(study: str) -> list[Path]:
    root = Path("results/metrics") / study
    return sorted(p for p in root.rglob("*.parquet") if p.parent != root)


def se_rows(cfg: dict, tmp: Path) -> list[dict]:
    from gibench.datasets import DATASETS
    from gibench.pipeline.jobs_attack import evaluate_job
    from gibench.pipeline.targets import lpips_backbone_file

    out = []
    backbone = lpips_backbone_file(cfg, "selective_encryption")
    for p in metric_files("selective_encryption"):
        old, rec = io.load_table(p)
        if getattr(DATASETS.get(rec["wildcards"]["dataset"]), "modality", "image") == "text":
            continue
        new = rerun(p, evaluate_job, cfg, tmp, {"backbone": backbone} if backbone else None)
        for o, n in zip(old.to_pylist(), new):
            assert (o["restart"], o["attack"]) == (n["restart"], n["attack"])
            out.append({"case": f"{o['dataset']}/{o['model']}/{o['slot']}/{o['metric']}/r{o['ratio']:.3f}/{o['attack']}"
                                f"/rep{o['restart']}",
                        "lpips_before": o.get("lpips"), "lpips_status_before": o.get("lpips_status"),
                        "lpips_after": n.get("lpips"), "lpips_status_after": n.get("lpips_status"),
                        "ssim_before": o.get("ssim"), "ssim_after": n.get("ssim")})
    return out


def sd_rows(cfg: dict, tmp: Path) -> list[dict]:
    from gibench.studies.stochastic_defenses.jobs import sd_evaluate_job

    cfg = copy.deepcopy(cfg)
    ev = cfg["studies"]["stochastic_defenses"].setdefault("evaluation", {})
    ev["ssim"] = "ssim_center"
    thr = float(ev.get("asr_threshold", 0.5))
    out = []
    for p in metric_files("stochastic_defenses"):
        old = io.load_table(p)[0].to_pylist()
        new = rerun(p, sd_evaluate_job, cfg, tmp)
        for o, n in zip(old, new):
            assert (o["slot"], o["restart"]) == (n["slot"], n["restart"])
            out.append({"case": f"{o['dataset']}/{o['model']}/{o['defense']}/{o['attack']}/{o['slot']}",
                        "dataset": o["dataset"], "defense": o["defense"], "attack": o["attack"],
                        "ssim_before": o["ssim"], "ssim_full_rerun": n["ssim_full"], "ssim_after": n["ssim"],
                        "success_before": o["ssim"] > thr, "success_after": n["ssim"] > thr})
    return out


def cs_rows(cfg: dict, tmp: Path) -> list[dict]:
    from gibench.studies.concealed_samples.jobs import cs_evaluate_job
    from gibench.pipeline.targets import lpips_backbone_path

    out = []
    backbone = lpips_backbone_path(cfg, "alex")
    files = metric_files("concealed_samples")
    datasets = sorted({io.load_table(p)[1]["wildcards"]["dataset"] for p in files})
    variants = {}
    for conv in ("pm1", "raw01"):
        c = copy.deepcopy(cfg)
        ev = c["studies"]["concealed_samples"].setdefault("evaluation", {})
        ev["lpips"] = {**(ev.get("lpips") or {}), "backbone": "alex", "version": "0.1", "input": conv,
                       "datasets": datasets}
        variants[conv] = c
    for p in files:
        old = io.load_table(p)[0].to_pylist()
        new = {conv: rerun(p, cs_evaluate_job, c, tmp, {"backbone": backbone}) for conv, c in variants.items()}
        for o, a, b in zip(old, new["pm1"], new["raw01"]):
            assert (o["slot"], o["restart"]) == (a["slot"], a["restart"]) == (b["slot"], b["restart"])
            out.append({"case": f"{o['dataset']}/{o['model']}/{o['server']}/{o['cohort']}/{o['defense']}/{o['attack']}"
                                f"/{o['slot']}/rep{o['restart']}",
                        "dataset": o["dataset"], "lpips_stored": o.get("lpips"), "lpips_pm1": a.get("lpips"),
                        "lpips_raw01": b.get("lpips"), "status_raw01": b.get("lpips_status")})
    return out


def se_tables(cfg: dict, se: list[dict]) -> str:
    """Tables 2 and 4 of the selective-encryption study from the run's gathered rows: before =
    the stored rows and the run's own protection criterion; after = LPIPS filled in from the
    re-run and the paper's criterion, LPIPS >= 0.3."""
    from gibench.tables.selective_encryption import table2, table4

    gathered = Path("results/metrics/selective_encryption/metrics.parquet")
    if not gathered.exists():
        return "(no gathered selective-encryption rows)\n"
    old = io.load_table(gathered)[0].to_pylist()
    new_lp = {r["case"]: (r["lpips_after"], r["lpips_status_after"]) for r in se}
    new = []
    for r in old:
        key = f"{r['dataset']}/{r['model']}/{r['slot']}/{r['metric']}/r{r['ratio']:.3f}/{r['attack']}/rep{r['restart']}"
        if key in new_lp:
            r = {**r, "lpips": new_lp[key][0], "lpips_status": new_lp[key][1]}
        new.append(r)
    after_cfg = copy.deepcopy(cfg)
    after_cfg["studies"]["selective_encryption"]["evaluation"]["protection"]["image"] = \
        {"metric": "lpips", "op": ">=", "threshold": 0.3}
    out = []
    for name, fn in (("table4", table4), ("table2", table2)):
        out.append(f"### {name} before (stored rows, the run's criterion)\n\n" + fn(old, cfg).to_markdown())
        out.append(f"### {name} after (LPIPS computed, criterion LPIPS >= 0.3)\n\n" + fn(new, after_cfg).to_markdown())
    return "\n\n".join(out) + "\n"


def report(se: list[dict], sd: list[dict], cs: list[dict], k: int) -> str:
    lines = []
    w = lines.append
    w("## selective_encryption (image rows): LPIPS alex v0.1, [-1, 1] input\n")
    w(f"rows: {len(se)}; LPIPS numeric before: {sum(r['lpips_before'] is not None for r in se)}, "
      f"after: {sum(r['lpips_after'] is not None for r in se)}; SSIM unchanged: "
      f"{all(r['ssim_before'] == r['ssim_after'] for r in se)}\n")
    w("| metric | before (mean over rows) | after (mean over rows) |")
    w("|---|---|---|")
    w(f"| LPIPS | {_fmt(_mean([r['lpips_before'] for r in se]))} "
      f"({sorted({str(r['lpips_status_before'])[:60] for r in se})[0] if se else ''}…) | "
      f"{_fmt(_mean([r['lpips_after'] for r in se]))} |")
    w(f"| rows with LPIPS ≥ 0.3 (protected, paper's criterion) | — | "
      f"{sum(1 for r in se if r['lpips_after'] is not None and r['lpips_after'] >= 0.3)} of {len(se)} |\n")
    w("| example row | LPIPS before | LPIPS after |")
    w("|---|---|---|")
    for r in se[:k]:
        w(f"| {r['case']} | {_fmt(r['lpips_before'])} | {_fmt(r['lpips_after'])} |")

    w("\n## stochastic_defenses: SSIM full-map (before) vs CVB / torchmetrics 0.11.4 centre (after)\n")
    same = all(abs(r["ssim_before"] - r["ssim_full_rerun"]) < 1e-12 for r in sd)
    w(f"rows (victims): {len(sd)}; the re-run's full-map SSIM equals the stored one: {same}\n")
    w("| metric | before | after |")
    w("|---|---|---|")
    w(f"| SSIM (mean over rows) | {_fmt(_mean([r['ssim_before'] for r in sd]))} | {_fmt(_mean([r['ssim_after'] for r in sd]))} |")
    w(f"| ASR % (SSIM > 0.5, all rows) | {_fmt(100 * _mean([float(r['success_before']) for r in sd]), 1)} | "
      f"{_fmt(100 * _mean([float(r['success_after']) for r in sd]), 1)} |")
    flips = [r for r in sd if r["success_before"] != r["success_after"]]
    w(f"| rows whose success flips | — | {len(flips)} |\n")
    by: dict[tuple, list[dict]] = {}
    for r in sd:
        by.setdefault((r["dataset"], r["attack"]), []).append(r)
    w("| dataset / attack | n | SSIM before | SSIM after | ASR % before | ASR % after |")
    w("|---|---|---|---|---|---|")
    for (d, a), rs in sorted(by.items()):
        w(f"| {d} / {a} | {len(rs)} | {_fmt(_mean([r['ssim_before'] for r in rs]))} | {_fmt(_mean([r['ssim_after'] for r in rs]))} "
          f"| {_fmt(100 * _mean([float(r['success_before']) for r in rs]), 1)} | {_fmt(100 * _mean([float(r['success_after']) for r in rs]), 1)} |")
    w("\n| example row | SSIM before | SSIM after |")
    w("|---|---|---|")
    for r in sorted(sd, key=lambda r: r["ssim_after"] - r["ssim_before"], reverse=True)[:k]:
        w(f"| {r['case']} | {_fmt(r['ssim_before'])} | {_fmt(r['ssim_after'])} |")

    w("\n## concealed_samples: LPIPS alex v0.1 with [-1, 1] input (before) vs DCS-2's unmapped [0, 1] (after)\n")
    w(f"rows: {len(cs)}; stored LPIPS numeric in the run: {sum(r['lpips_stored'] is not None for r in cs)} "
      f"(DCS-2 reports LPIPS for TinyImageNet only)\n")
    w("| dataset | n | LPIPS [-1,1] (mean) | LPIPS [0,1] unmapped (mean) | note |")
    w("|---|---|---|---|---|")
    for d in sorted({r["dataset"] for r in cs}):
        rs = [r for r in cs if r["dataset"] == d]
        note = "" if any(r["lpips_raw01"] is not None for r in rs) else str(rs[0]["status_raw01"])[:90]
        w(f"| {d} | {len(rs)} | {_fmt(_mean([r['lpips_pm1'] for r in rs]))} | {_fmt(_mean([r['lpips_raw01'] for r in rs]))} | {note} |")
    w("\n| example row | LPIPS [-1,1] | LPIPS [0,1] unmapped |")
    w("|---|---|---|")
    for r in [r for r in cs if r["lpips_raw01"] is not None][:k]:
        w(f"| {r['case']} | {_fmt(r['lpips_pm1'])} | {_fmt(r['lpips_raw01'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished run: holds results/ and config/config.yaml")
    ap.add_argument("--config", type=Path, default=None, help="the run's config (default RUN/config/config.yaml)")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    ap.add_argument("--examples", type=int, default=3)
    ap.add_argument("--tables", action="store_true", help="also print SE Tables 2 and 4 before/after")
    args = ap.parse_args(argv)
    out = args.out.resolve() if args.out else None
    run = args.run.resolve()
    cfg_path = (args.config or run / "config" / "config.yaml").resolve()
    os.chdir(run)
    cfg = C.load(cfg_path)
    cfg["resources_dir"] = str(REPO / "resources")   # today's bundled files (the AlexNet backbone)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        se = se_rows(cfg, tmp) if "selective_encryption" in cfg["studies"] else []
        sd = sd_rows(cfg, tmp) if "stochastic_defenses" in cfg["studies"] else []
        cs = cs_rows(cfg, tmp) if "concealed_samples" in cfg["studies"] else []
    text = report(se, sd, cs, args.examples)
    if args.tables and se:
        text += "\n## selective_encryption tables\n\n" + se_tables(cfg, se)
    print(text)
    if out:
        out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
