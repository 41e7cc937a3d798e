"""A small table document and its writers (CSV, Markdown, LaTeX), all atomic.

A :class:`TableDoc` holds two views of one table:

* the *display* view (``header`` + ``body``: strings, laid out like the paper's table),
  rendered to Markdown (a bold caption line first, then the table, then notes) and LaTeX;
* the *tidy* view (``tidy_columns`` + ``tidy``: one record per cell, numbers as numbers),
  written as the CSV, so the CSV is machine-readable: numeric ``mean`` / ``std`` / ``n``
  columns and a ``status`` column instead of formatted strings.

The display view is also written as a standalone HTML page (``html``: the Markdown rendered by
markdown-it-py, with a small style sheet), the form in which ``snakemake --report`` shows a table.
"""
from __future__ import annotations

import csv
import io as _io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .. import io, model_ids
from ..metrics import METRICS as IMAGE_METRICS

DISPLAY = {
    # significance metrics
    "grad": "Grad", "prodsig": "ProdSig", "sens": "Sens", "param": "Param", "random": "Random",
    "sens_discrete": "Sens (Discrete)", "sens_probe": "Sens (Probe)", "attn": "Attn",
    **{f"onefifth_{i}": f"OneFifth-{i}" for i in range(1, 6)}, "token_accuracy": "Token Acc.",
    **{f"onefifth_blocks_{i}": f"OneFifth-{i} (blocks)" for i in range(1, 6)},
    # models
    "lenet": "LeNet", "cnn": "CNN", "bert": "BERT", "gpt2": "GPT-2", "resnet18": "ResNet-18",
    # datasets
    "cifar100": "CIFAR-100", "cifar10": "CIFAR-10", "mnist": "MNIST", "tiny_imagenet": "Tiny ImageNet",
    "cola": "CoLA", "sst2": "SST-2", "rotten_tomatoes": "Rotten Tomatoes",
    # attacks: their registry entries' display names (display() asks gibench.attacks.ATTACKS)
    # evaluation metrics: the image metrics' display names are their registry entries' (gibench.metrics.METRICS)
    **{n: IMAGE_METRICS.get(n).display for n in ("lpips", "mse", "psnr", "ssim")},
    "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "embed_dist": "EmbedDist",
}


def display(name: Any) -> str:
    """The paper's spelling of a name; a model id with an init (``lenet@dlg_uniform``) reads
    ``LeNet (DLG init)`` (:mod:`gibench.model_ids`)."""
    key = str(name)
    if key not in DISPLAY and model_ids.SEP in key:
        base, init = model_ids.split(key)
        return model_ids.label(DISPLAY.get(base, base), init)
    if key not in DISPLAY:
        # deferred: the attack modules import torch, and the tables are imported at DAG build
        # (tests/test_import_graph.py); only a name no other table word matches asks the registry
        from ..attacks import ATTACKS

        if key in ATTACKS and ATTACKS.entry(key).applies_to("selective_encryption"):
            return ATTACKS.display(key)
    return DISPLAY.get(key, key)


# ------------------------------------------------------------------ number formatting

def decimals_for(x: float, sig: int) -> int:
    """Decimals that show ``sig`` significant figures of ``x`` (0 for |x| >= 10**(sig-1))."""
    if x == 0 or not math.isfinite(x):
        return 0
    return max(0, sig - 1 - math.floor(math.log10(abs(x))))


def fmt_mean_std(mean: float, std: float, sig: int = 2, min_decimals: int = 2, max_decimals: int = 8) -> str:
    """``mean ± std`` like the paper: the std shown to ``sig`` significant figures, the
    mean to the same decimals, never fewer than ``min_decimals``
    (0.063 ± 0.049, 10.06 ± 6.20, 0.140 ± 0.070, 0.000900 ± 0.000060)."""
    if mean is None or not math.isfinite(mean):
        return "nan" if mean is None else str(mean)
    ref = std if std is not None and math.isfinite(std) and std != 0 else mean
    d = min(max(decimals_for(ref, sig), min_decimals), max_decimals)
    s = "nan" if std is None or not math.isfinite(std) else f"{std:.{d}f}"
    return f"{mean:.{d}f} ± {s}"


def fmt_ratio(r: float | None) -> str:
    """An encryption ratio as in the paper's Table 4 (0.3, 0.05, 0.002)."""
    if r is None:
        return "NA"
    return f"{r:.3f}".rstrip("0").rstrip(".") or "0"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "$": r"\$", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "±": r"$\pm$", "★": r"$\star$", "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$",
        "…": r"\dots{}", "–": "--", "μ": r"$\mu$"}


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)        # shortest text that reads back exactly
    return str(v)


# ------------------------------------------------------------------ the document

@dataclass
class TableDoc:
    name: str                       # file stem: table4
    title: str                      # "Table 4: ..." (bold first line of the Markdown)
    header: list[str]
    body: list[list[str]]
    tidy_columns: list[str]
    tidy: list[dict]
    notes: list[str] = field(default_factory=list)   # lines after the table (legend, reasons)
    group_columns: int = 0          # leading display columns whose repeats are blanked

    # -- renderers
    def to_csv(self) -> str:
        buf = _io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.tidy_columns)
        for rec in self.tidy:
            w.writerow([_csv_value(rec.get(c)) for c in self.tidy_columns])
        return buf.getvalue()

    def _display_rows(self) -> list[list[str]]:
        rows, prev = [], [None] * self.group_columns
        for row in self.body:
            shown = list(row)
            for i in range(self.group_columns):
                if row[:i + 1] == prev[:i + 1]:
                    shown[i] = ""
            prev = list(row[:self.group_columns]) + prev[self.group_columns:]
            rows.append(shown)
        return rows

    def to_markdown(self) -> str:
        def cell(s: Any) -> str:
            return str(s).replace("|", "\\|").replace("\n", " ")

        lines = [f"**{cell(self.title)}**", ""]
        lines.append("| " + " | ".join(cell(h) for h in self.header) + " |")
        lines.append("|" + "|".join("---" for _ in self.header) + "|")
        for row in self._display_rows():
            lines.append("| " + " | ".join(cell(c) for c in row) + " |")
        if self.notes:
            lines.append("")
            lines += [n for n in self.notes]
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        def tex(s: Any) -> str:
            return "".join(_TEX.get(ch, ch) for ch in str(s))

        cols = "l" * self.group_columns + "c" * (len(self.header) - self.group_columns)
        lines = [r"\begin{table}[t]", r"\centering", r"\caption{" + tex(self.title) + "}",
                 r"\begin{tabular}{" + cols + "}", r"\hline",
                 " & ".join(tex(h) for h in self.header) + r" \\", r"\hline"]
        for row in self._display_rows():
            lines.append(" & ".join(tex(c) for c in row) + r" \\")
        lines += [r"\hline", r"\end{tabular}"]
        if self.notes:
            lines.append(r"\par\footnotesize " + " ".join(tex(n) for n in self.notes))
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """A standalone HTML page: the caption as a heading, the table, the notes (the Markdown
        view rendered by markdown-it-py; raw HTML in cells is escaped, not passed through)."""
        md = self.to_markdown().split("\n")
        n_table = 2 + len(self.body)                 # header, rule, rows (after title + blank line)
        table = _mark_long_cells(markdown_to_html("\n".join(md[2:2 + n_table])))
        notes = "".join(f'<div class="note">{markdown_to_html(n)}</div>\n' for n in self.notes if n.strip())
        return html_page(self.title, table + notes)

    # -- writer
    def write(self, out_dir: str | Path, formats: Sequence[str] = ("csv", "md")) -> list[Path]:
        """Write ``<out_dir>/<name>.<ext>`` for each format, each atomically."""
        render = {"csv": self.to_csv, "md": self.to_markdown, "tex": self.to_latex, "html": self.to_html}
        paths = []
        for ext in formats:
            if ext not in render:
                raise ValueError(f"unknown table format {ext!r}; known: {', '.join(render)}")
            p = Path(out_dir) / f"{self.name}.{ext}"
            io.write_text(p, render[ext]())
            paths.append(p)
        return paths


# ------------------------------------------------------------------ HTML (the report's view)

TABLE_FORMATS = ("csv", "md", "html", "tex")

#: the style of a table page in the report (its viewer is an iframe the width of the pane)
HTML_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; font-size: 14px;
       margin: 12px 16px; color: #1d1d1f; line-height: 1.4; }
h1 { font-size: 15px; font-weight: 600; margin: 0 0 10px 0; max-width: 75em; }
table { border-collapse: collapse; margin: 8px 0 14px 0; font-variant-numeric: tabular-nums; font-size: 13px; }
th, td { border: 1px solid #d0d4da; padding: 2px 6px; vertical-align: top; }
th { background: #eef1f5; position: sticky; top: 0; text-align: center; }
td { white-space: nowrap; } td.wrap { white-space: normal; min-width: 10em; max-width: 22em; }
tbody tr:nth-child(even) { background: #f8f9fb; }
.note p { max-width: 75em; margin: 3px 0; font-size: 13px; color: #333; }
code { font-size: 12px; }
"""


LONG_CELL = 40      # characters: a longer cell (a finding, a reason) wraps, shorter ones (numbers) never do


def _mark_long_cells(fragment: str) -> str:
    """``<td class="wrap">`` for cells whose text is longer than :data:`LONG_CELL`."""
    import re

    def mark(m: "re.Match[str]") -> str:
        text = re.sub(r"<[^>]+>", "", m.group(1))
        return f'<td class="wrap">{m.group(1)}</td>' if len(text) > LONG_CELL else m.group(0)

    return re.sub(r"<td>(.*?)</td>", mark, fragment, flags=re.S)


def markdown_to_html(text: str) -> str:
    """Markdown (CommonMark + GitHub tables) to an HTML fragment; raw HTML is escaped."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def html_page(title: str, body_html: str) -> str:
    """A self-contained HTML page (no external resources) with ``title`` as its heading."""
    import html

    t = html.escape(str(title))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{t}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n"
            f"{body_html}</body>\n</html>\n")


def table_formats(outputs: Any) -> tuple[str, ...]:
    """The table formats a job's outputs name (Snakemake output names ``csv``, ``md``, ``html``,
    ``tex``), in that order: what a table job writes, so that a rule that declares an ``html``
    output gets the report's view and a replay of an older record writes what it wrote then."""
    names = set(getattr(outputs, "keys", lambda: [])())
    found = tuple(f for f in TABLE_FORMATS if f in names)
    return found or ("csv", "md")
