"""`snakemake --report` (issue 8): one self-contained HTML file with every table and figure of
the micro run, each captioned with what it shows (a table's own caption and notes), the
config it came from (its record's config digest) and what could not be computed here
(LPIPS with VGG16, whose weights the micro run does not download)."""
from __future__ import annotations

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


def test_report_has_every_table_with_its_caption_config_and_notes(report):
    run, text, results = report
    tables = sorted((run / "results/tables").glob("*/*.md"))
    assert {t.stem for t in tables} >= {"table2", "table4", "table5", "table6"}
    for t in tables:
        key = t.relative_to(run).as_posix()
        assert key in results, key
        cap = _plain(results[key]["caption"])
        md = t.read_text().splitlines()
        title = md[0].strip("*")
        assert title.startswith("Table") and title in cap, key
        for note in md[1:]:                      # the table and its notes, verbatim
            assert note in cap, (key, note)
        rec = json.loads((run / (key + ".prov.json")).read_text())
        assert rec["config_digest"] in cap and rec["code"]["git_commit"] in cap
    # what could not be computed here: LPIPS (Table 4's criterion here) without VGG16 weights
    cap4 = _plain(results[f"results/tables/{STUDY}/table4.md"]["caption"])
    assert "LPIPS could not be computed" in cap4 and "VGG16 backbone weights not found" in cap4


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


def test_report_describes_the_workflow_and_its_config(report):
    run, text, results = report
    m = re.search(r'var workflow_desc = (".*?");\s*$', text, re.M)
    assert m
    desc = _plain(json.loads(m.group(1)))
    assert "gibench" in desc and "selective_encryption" in desc and "gibench verify" in desc
    assert '"ig_fast"' in desc and '"iterations": 10' in desc          # the config of the run
