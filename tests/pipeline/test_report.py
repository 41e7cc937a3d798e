"""`snakemake --report` (issues 8, 24): one self-contained HTML file with every table and figure of
the micro run, each captioned with what it shows, the config it came from (its record's config
digest, in a short provenance block) and what could not be computed here (LPIPS with VGG16,
whose weights the micro run does not download); tables are HTML items (their caption, table and
notes), the config is its own item, and the landing page is short."""
from __future__ import annotations

import base64
import html
import json
import re

import pytest

from provenance_micro import STUDY, micro_run
from workflow_helpers import run_snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = micro_run(tmp_path_factory)
    out = run / "report.html"
    if not out.exists():
        run_snakemake(run, run / "config.yaml", "--report", str(out))
    text = out.read_text()
    m = re.search(r"^\s*var results = (\{.*\});\s*$", text, re.M)
    assert m, "no results table in the report"
    return run, text, json.loads(m.group(1))


def _plain(caption_html: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", caption_html))


def test_report_is_one_self_contained_file(report):
    run, text, results = report
    assert not re.search(r"<(script|link|img)[^>]*(src|href)=\"https?://", text)
    for entry in results.values():
        assert entry["data_uri"].startswith("data:")


def _item(entry) -> str:
    return base64.b64decode(entry["data_uri"].split("base64,", 1)[1]).decode("utf-8")


def test_report_has_every_table_as_html_with_its_caption_config_and_notes(report):
    run, text, results = report
    tables = sorted((run / "results/tables").glob("*/*.md"))
    assert {t.stem for t in tables} >= {"table2", "table4", "table5", "table6"}
    for t in tables:
        key = t.with_suffix(".html").relative_to(run).as_posix()
        assert key in results and results[key]["mime_type"] == "text/html", key
        assert t.with_suffix(".csv").exists()                 # CSV and Markdown kept as files
        page = _plain(_item(results[key]))
        md = t.read_text().splitlines()
        title = md[0].strip("*")
        assert title.startswith("Table") and title in page, key
        assert page.count("\n") > 3 and "<table>" in _item(results[key])
        cap = _plain(results[key]["caption"])
        rec = json.loads((run / (key + ".prov.json")).read_text())
        assert rec["config_digest"] in cap and rec["code"]["git_commit"] in cap
        assert "Full provenance record" in cap
        assert t.relative_to(run).as_posix() not in results       # the Markdown is no report item
    # what could not be computed here: LPIPS (Table 4's criterion here) without VGG16 weights
    page4 = _plain(_item(results[f"results/tables/{STUDY}/table4.html"]))
    assert "LPIPS could not be computed" in page4 and "VGG16 backbone weights not found" in page4


def test_report_has_every_figure_with_what_it_shows_and_what_is_missing(report):
    run, text, results = report
    figures = sorted((run / "results/figures").glob("*/*.png"))
    assert len(figures) == 6
    for f in figures:
        key = f.relative_to(run).as_posix()
        assert key in results and results[key]["mime_type"] == "image/png", key
        cap = _plain(results[key]["caption"])
        assert f.stem in cap and "What it shows" in cap
        rec = json.loads((run / (key + ".prov.json")).read_text())
        assert rec["config_digest"] in cap
        # the metric rows say LPIPS (VGG16) is unavailable here; the caption says so
        assert '"lpips": [' in cap and "unavailable: VGG16 backbone weights not found" in cap


def test_report_landing_page_is_short_and_the_config_is_its_own_item(report):
    run, text, results = report
    m = re.search(r'var workflow_desc = (".*?");\s*$', text, re.M)
    assert m
    desc = _plain(json.loads(m.group(1)))
    assert "gibench" in desc and "selective_encryption" in desc and "gibench verify" in desc
    lines = [line for line in desc.splitlines() if line.strip()]
    assert len(lines) <= 30, desc
    assert '"iterations"' not in desc                                   # no config dump on the landing page
    cfg = _plain(_item(results["results/report/config.html"]))
    assert "ig_fast" in cfg and "iterations: 10" in cfg                 # the config of the run
