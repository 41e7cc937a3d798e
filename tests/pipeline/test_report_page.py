"""Issue 24 item 1: the HTML report as the front page of a run, without a browser.

* every table is an HTML page (the report's iframe view), its CSV and Markdown kept;
* the landing page (workflow/report/workflow.rst) is short — what ran, the studies, the claims
  summary, where things are — and no longer holds the config (its own item, rule report_config);
* the sidecar record starts with the short block a caption shows (``:end-before: "format":``);
* the screenshot script's HTML logic (reading a report, picking items, opening one) works on a
  report-shaped file.  The real report and the browser are exercised by test_report.py (slow)
  and scripts/report_screenshots.py.

The landing page is rendered here as Snakemake 9's report renders its global description
(``snakemake/report/__init__.py``: a Jinja environment with trim_blocks/lstrip_blocks, the rst
link targets of categories and files appended, docutils ``publish_parts(..., "html")["html_body"]``)."""
from __future__ import annotations

import json
import os
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from gibench import provenance as PV
from gibench import report_screens as RS
from gibench.pipeline import jobs_report as JR
from gibench.tables.render import TableDoc, table_formats

ROOT = Path(__file__).resolve().parents[2]


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.cells: list[str] = []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _doc():
    return TableDoc(name="table4", title="Table 4: minimal ratio <b>bold?</b>", header=["Attack", "Model", "Grad"],
                    body=[["IG", "LeNet", "0.2"], ["IG", "CNN", "NA | none"]], tidy_columns=["a"], tidy=[{"a": 1}],
                    notes=["NA: not reached.", "LPIPS unavailable: <script>alert(1)</script>"], group_columns=1)


def test_a_table_is_an_html_page_with_its_caption_table_and_notes(tmp_path):
    doc = _doc()
    written = doc.write(tmp_path, ("csv", "md", "html"))
    assert [p.name for p in written] == ["table4.csv", "table4.md", "table4.html"]
    page = (tmp_path / "table4.html").read_text()
    p = _Tags()
    p.feed(page)
    assert p.tags.count("table") == 1 and p.tags.count("tr") == 3          # header + 2 rows
    # the display view: repeated group cells blanked as in the Markdown, '|' kept inside a cell
    assert p.cells == ["Attack", "Model", "Grad", "IG", "LeNet", "0.2", "", "CNN", "NA | none"]
    assert "<h1>Table 4: minimal ratio &lt;b&gt;bold?&lt;/b&gt;</h1>" in page
    assert "NA: not reached." in page and "<script>alert" not in page        # raw HTML escaped
    assert "http" not in page                                               # self-contained
    assert (tmp_path / "table4.md").read_text() == doc.to_markdown()        # Markdown kept
    assert "<td>0.2</td>" in page                                           # numbers never wrap ...
    long = TableDoc(name="c", title="Claims", header=["Finding"], body=[["x" * 60]], tidy_columns=[], tidy=[])
    assert '<td class="wrap">' in long.to_html()                            # ... long text does


def test_table_formats_follow_the_rules_outputs():
    assert table_formats({"csv": "a.csv", "md": "a.md", "html": "a.html"}) == ("csv", "md", "html")
    assert table_formats({"csv": "a.csv", "md": "a.md"}) == ("csv", "md")   # a record made before html


def test_sidecar_starts_with_the_short_block_a_caption_shows():
    rec = {"format": 2, "rule": "table", "code": {"gibench": "0.1.0", "git_commit": "abc"}, "config_digest": "d" * 64,
           "device": "cpu:x86_64", "seed": None, "file": "results/tables/s/table4.html", "job": "j", "params": {"x": 1},
           "versions": {"torch": "2"}, "wildcards": {}, "inputs": {"a": "b"}, "input_files": {}, "output_files": {}}
    text = PV.sidecar_text(rec)
    assert json.loads(text) == rec
    head = text.split('"format":')[0]
    for key in ("file", "rule", "code", "config_digest", "device"):
        assert f'"{key}"' in head
    for key in ("params", "versions", "inputs", "job"):
        assert f'"{key}"' not in head
    assert len(head.splitlines()) <= 14


# ---------------------------------------------------------------- the landing page

def _render_rst(path: Path, config: dict, files: list, categories: dict) -> str:
    """Snakemake 9's rendering of the report's global description (see the module docstring)."""
    from docutils.core import publish_parts
    from jinja2 import Environment

    rst_links = textwrap.dedent("""

    .. _Workflow: javascript:show_panel('workflow')
    .. _Statistics: javascript:show_panel('statistics')
    {% for cat, catresults in categories|dictsort %}
    .. _{{ cat.name }}: javascript:app.showCategory('{{ cat.name|urlencode }}')
    {% endfor %}
    {% for res in files %}
    .. _{{ res.target }}: javascript:app.showResultInfo('{{ res.path|urlencode }}')
    {% endfor %}
    """)
    env = Environment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string(path.read_text() + rst_links).render(
        snakemake=SimpleNamespace(config=config), categories=categories, files=files)
    return publish_parts(text, writer="html", settings_overrides={"report_level": 2})["html_body"]


class _Cat:
    def __init__(self, name):
        self.name = name

    def __lt__(self, other):
        return self.name < other.name


def _files(*paths):
    return [SimpleNamespace(path=Path(p), target=Path(p).name) for p in paths]


CONFIG = {"seed": 1, "device": "auto", "datasets": {"cifar100": {}, "mnist": {}},
          "studies": {"selective_encryption": {"attacks": {"ig": {"iterations": 24000}}},
                      "stochastic_defenses": {}, "concealed_samples": {}}}


def test_landing_page_is_short_and_names_runs_claims_and_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    claims = tmp_path / "results/claims"
    claims.mkdir(parents=True)
    title = "**Claims of Gu et al.: 82 findings, 82 checks — 2 hold, 0 fail, 80 not checkable here**"
    (claims / "selective_encryption.md").write_text(title + "\n\n| a |\n|---|\n| b |\n")
    files = _files("results/claims/selective_encryption.html", JR.CONFIG_HTML,
                   "results/tables/selective_encryption/table4.html")
    cats = {_Cat(n): {} for n in ("Claims", "Config", "selective_encryption")}
    body = _render_rst(ROOT / "workflow/report/workflow.rst", CONFIG, files, cats)
    assert "System Message" not in body and "problematic" not in body, body   # valid reStructuredText
    text = RS.plain_text(body)
    assert len(text.splitlines()) <= 30, text
    assert len(text) <= 3000, len(text)
    for s in CONFIG["studies"]:
        assert s in text
    assert "82 findings, 82 checks — 2 hold, 0 fail, 80 not checkable here" in text
    assert "config.html" in text and "results/tables/<study>" in text
    assert "24000" not in text and '"seed"' not in text                 # the config is its own item now


def test_landing_page_without_claims_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    body = _render_rst(ROOT / "workflow/report/workflow.rst", CONFIG, _files(JR.CONFIG_HTML), {_Cat("Config"): {}})
    assert "System Message" not in body
    assert "no claims report in this run" in RS.plain_text(body)


def test_config_item_holds_the_whole_config_and_its_digest():
    page = JR.config_html(CONFIG)
    digest = PV.digest_obj(CONFIG)
    assert digest in page and f"results/configs/{digest}.yaml" in page
    assert "iterations: 24000" in page                                  # the YAML, verbatim
    assert JR.report_targets(CONFIG) == [JR.CONFIG_HTML]


def test_rule_all_asks_for_every_tables_html_view():
    """By name, so that a run made before the views existed makes them (a job re-runs for a missing
    output only when something asks for it)."""
    import yaml

    from gibench import config as gconfig
    from gibench.pipeline import targets as T

    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    gconfig.validate(cfg, str(ROOT / "config/schema/config.schema.yaml"))
    targets = T.all_targets(cfg)
    md = [t for t in targets if t.endswith(".md") and t.startswith(("results/tables/", "results/claims/"))]
    assert md and all(t[:-3] + ".html" in targets for t in md)
    assert JR.CONFIG_HTML in targets


# ---------------------------------------------------------------- the screenshot script's HTML logic

def _report_file(tmp_path: Path) -> tuple[Path, dict]:
    results = {
        "results/tables/s/table2.html": {"mime_type": "text/html", "data_uri": "data:text/html;base64,AA=="},
        "results/tables/s/table4.html": {"mime_type": "text/html", "data_uri": "data:text/html;base64,AB=="},
        "results/figures/s/grid_x.png": {"mime_type": "image/png", "data_uri": "data:image/png;base64,AC=="},
        "results/figures/s/curves_x.png": {"mime_type": "image/png", "data_uri": "data:image/png;base64,AD=="},
        "results/claims/s.html": {"mime_type": "text/html", "data_uri": "data:text/html;base64,AE=="},
    }
    desc = "<div><h1>gibench</h1><p>What ran: &lt;1 study&gt;</p></div>"
    text = (f"<html><body><div id=\"app\"></div><script>\n    var workflow_desc = {json.dumps(desc)};\n</script>\n"
            f"<script>\n    var results = {json.dumps(results)};\n</script></body></html>")
    p = tmp_path / "report.html"
    p.write_text(text)
    return p, results


def test_screenshot_logic_reads_a_report_and_opens_an_item(tmp_path):
    p, results = _report_file(tmp_path)
    data = RS.report_data(p.read_text())
    assert data["results"] == results and data["landing"] == "gibenchWhat ran: <1 study>"
    picked = RS.pick_items(results)
    assert picked == {"table": "results/tables/s/table4.html", "figure": "results/figures/s/curves_x.png",
                      "claims": "results/claims/s.html"}
    page = RS.view_page(p.read_text(), picked["figure"], results)
    assert page.count("app.setView(") == 1 and '"img"' in page and json.dumps(picked["figure"]) in page
    assert page.index("app.setView(") < page.index("</body>")
    with pytest.raises(RS.ReportError):
        RS.report_data("<html></html>")
