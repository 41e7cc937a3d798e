"""Build the HTML report of an existing run and look at it as a reader does.

``snakemake --report`` writes one self-contained HTML file (a small React app with every item
embedded as a data URI).  This module builds it for a run directory, reads back what it holds
(:func:`report_data`: the landing text and the result items), and takes screenshots of three
views in Debian's headless Chromium (``apt-get install chromium``): the landing page, one table
and one figure.  A view other than the landing page is opened by a script appended to a copy of
the report, which calls the report app's own ``setView`` as its "view" button does.

Command line: ``python scripts/report_screenshots.py [--directory RUN] [--configfile CFG] [-o DIR]``
(README, "Provenance, report, archives and verification").
"""
from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WINDOW = (1400, 1800)          # the window the screenshots used
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


class ReportError(RuntimeError):
    pass


def build_report(workdir: str | Path, out: str | Path, configfile: str | Path | None = None,
                 snakefile: str | Path | None = None, timeout: int = 900) -> Path:
    """``snakemake --report OUT`` for the run in ``workdir`` (its results/ and .snakemake/)."""
    workdir, out = Path(workdir).resolve(), Path(out).resolve()
    exe = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    cmd = [exe, "--snakefile", str(snakefile or ROOT / "Snakefile"), "--directory", str(workdir),
           "--report", str(out)]
    if configfile:
        cmd += ["--configfile", str(Path(configfile).resolve())]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0 or not out.exists():
        raise ReportError(f"snakemake --report failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return out


def report_data(text: str) -> dict[str, Any]:
    """What a report file holds: ``landing`` (the landing page's text, tags removed),
    ``landing_html`` and ``results`` ({path: {mime_type, caption, data_uri, ...}})."""
    m = re.search(r"^\s*var results = (\{.*\});\s*$", text, re.M)
    d = re.search(r'^\s*var workflow_desc = (".*?");\s*$', text, re.M)
    if not m or not d:
        raise ReportError("not a Snakemake report (no `var results` / `var workflow_desc`)")
    desc = json.loads(d.group(1))
    return {"results": json.loads(m.group(1)), "landing_html": desc, "landing": plain_text(desc)}


def plain_text(fragment: str) -> str:
    """An HTML fragment's text (tags removed, entities decoded, blank lines dropped)."""
    text = html.unescape(re.sub(r"<[^>]+>", "", fragment))
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def pick_items(results: dict[str, dict]) -> dict[str, str]:
    """One table (an HTML table item; Table 4 of a study if there is one) and one figure (a
    PNG; a curves figure if there is one) to look at, plus the first claims report."""
    html_items = sorted(p for p, e in results.items() if e.get("mime_type") == "text/html")
    tables = [p for p in html_items if "/tables/" in p]
    figures = sorted(p for p, e in results.items() if e.get("mime_type") == "image/png")
    out = {}
    if tables:
        out["table"] = next((p for p in tables if p.endswith("/table4.html")), tables[0])
    if figures:
        out["figure"] = next((p for p in figures if "/curves_" in p), figures[0])
    claims = [p for p in html_items if "/claims/" in p]
    if claims:
        out["claims"] = claims[0]
    return out


def view_page(text: str, result_path: str, results: dict[str, dict]) -> str:
    """A copy of the report that opens ``result_path`` (its caption in the side bar, the item
    in the main pane) once loaded, as clicking the item's view button does."""
    mime = results[result_path]["mime_type"]
    kind = {"image/png": "img", "image/svg+xml": "img", "image/jpeg": "img", "text/html": "html",
            "application/pdf": "pdf"}.get(mime)
    if kind is None:
        raise ReportError(f"{result_path}: the report has no view for {mime}")
    script = ("<script>window.addEventListener('load', function () { setTimeout(function () {"
              f" var p = {json.dumps(result_path)};"
              f" app.setView({{navbarMode: 'resultinfo', resultPath: p, content: {json.dumps(kind)},"
              " contentPath: results[p].data_uri}); }, 300); });</script>")
    i = text.rfind("</body>")
    return text[:i] + script + text[i:] if i >= 0 else text + script


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        exe = shutil.which(name)
        if exe:
            return exe
    return None


def screenshot(chromium: str, page: str | Path, png: str | Path, window: tuple[int, int] = WINDOW,
               budget_ms: int = 10000, timeout: int = 180) -> Path:
    """A headless Chromium screenshot of a local HTML file."""
    png = Path(png).resolve()
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-dev-shm-usage", f"--window-size={window[0]},{window[1]}",
           f"--virtual-time-budget={budget_ms}", f"--screenshot={png}", Path(page).resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not png.exists() or png.stat().st_size == 0:
        raise ReportError(f"chromium wrote no screenshot ({proc.returncode}): {proc.stderr[-2000:]}")
    return png


def screenshots(report: str | Path, out_dir: str | Path, chromium: str | None = None,
                items: dict[str, str] | None = None) -> dict[str, Path]:
    """``landing.png``, ``table.png``, ``figure.png`` (and ``claims.png``) of a report file;
    ``items`` overrides :func:`pick_items`' choice ({"table": "results/tables/.../table5.html"})."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise ReportError("no headless Chromium found (Debian: apt-get install chromium)")
    report, out_dir = Path(report), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = report.read_text(encoding="utf-8")
    data = report_data(text)
    shots = {"landing": screenshot(chromium, report, out_dir / "landing.png")}
    chosen = {**pick_items(data["results"]), **(items or {})}
    for what, path in chosen.items():
        if path not in data["results"]:
            raise ReportError(f"{path}: not an item of {report} (items: {', '.join(sorted(data['results']))})")
        page = out_dir / f".view_{what}.html"
        page.write_text(view_page(text, path, data["results"]), encoding="utf-8")
        try:
            shots[what] = screenshot(chromium, page, out_dir / f"{what}.png")
        finally:
            page.unlink(missing_ok=True)
    return shots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--directory", default=".", help="the run directory (results/, .snakemake/); default: .")
    ap.add_argument("--configfile", help="the run's config (default: the Snakefile's)")
    ap.add_argument("--report", help="an existing report.html to look at (skip building one)")
    ap.add_argument("-o", "--out", default="report_screenshots", help="folder for report.html and the PNGs")
    ap.add_argument("--chromium", help="the browser executable (default: chromium on PATH)")
    ap.add_argument("--table", help="the table item to show (default: a Table 4, else the first table)")
    ap.add_argument("--figure", help="the figure item to show (default: a curves figure, else the first figure)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = Path(args.report) if args.report else build_report(args.directory, out / "report.html", args.configfile)
    data = report_data(report.read_text(encoding="utf-8"))
    print(f"{report}: {len(data['results'])} items; landing page {len(data['landing'].splitlines())} lines")
    items = {k: v for k, v in (("table", args.table), ("figure", args.figure)) if v}
    for what, path in screenshots(report, out, args.chromium, items).items():
        print(f"{what}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
