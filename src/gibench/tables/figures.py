"""Drawing helpers every study's figures share, PNG and PDF.

Figures are drawn on a plain :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot state)
and saved atomically with fixed metadata (:func:`save_figure`), so re-runs give the same bytes.
Readable at a glance (issue 24): titles are wrapped to the figure's width (:func:`wrap_title`),
image grids keep their aspect ratio (:func:`draw_montage`), PSNR carries its unit
(:func:`metric_label`), symlog axes label a few decades only, and one legend right of the panels
names every line (:func:`_figure_legend`).  The studies' figures: :mod:`gibench.tables.selective_encryption.figures`,
:mod:`gibench.tables.stochastic_defenses`, :mod:`gibench.tables.concealed_samples`,
:mod:`gibench.tables.he_overhead` and the FedAvg curves.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import io
from .render import display
from .select import is_missing


FORMATS = ("png", "pdf")


# ------------------------------------------------------------------ saving

def _figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)                     # the Agg canvas; no pyplot, no global backend switch
    return fig


def save_figure(fig: Any, out_dir: str | Path, name: str, formats: Sequence[str] = FORMATS,
                dpi: int = 150) -> list[Path]:
    """``<out_dir>/<name>.<ext>`` for each format, written atomically."""
    meta = {"png": {"Software": None}, "pdf": {"CreationDate": None, "ModDate": None},
            "svg": {"Date": None}}
    paths = []
    for ext in formats:
        p = Path(out_dir) / f"{name}.{ext}"
        with io.atomic_path(p) as tmp:
            fig.savefig(tmp, format=ext, dpi=dpi, metadata=meta.get(ext))
        paths.append(p)
    return paths


def _colors(n: int, cmap: str = "tab10") -> list:
    import matplotlib

    cm = matplotlib.colormaps[cmap]
    if cmap == "tab10":
        return [cm(i % 10) for i in range(n)]
    return [cm(x) for x in (np.linspace(0.05, 0.9, n) if n > 1 else [0.5])]


#: units of evaluation metrics, shown in axis labels and cell values
UNITS = {"psnr": "dB"}


def metric_label(metric: str) -> str:
    """An evaluation metric's axis label with its unit: ``PSNR [dB]``, ``SSIM``."""
    unit = UNITS.get(str(metric))
    return f"{display(metric)} [{unit}]" if unit else display(metric)


def metric_value_text(metric: str, value: Any) -> str:
    """A metric value as a grid cell shows it: ``PSNR 12.3 dB``, ``LPIPS 0.41``; '' if missing."""
    if is_missing(value):
        return ""
    v = float(value)
    if not math.isfinite(v):
        return f"{display(metric)} {v}"
    text = f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.1e}"
    unit = UNITS.get(str(metric))
    return f"{display(metric)} {text}" + (f" {unit}" if unit else "")


def wrap_title(text: str, width_in: float, fontsize: float) -> str:
    """``text`` wrapped so that each line fits ``width_in`` inches at ``fontsize`` points (an
    average DejaVu Sans glyph is ~0.6 em wide; existing line breaks are kept)."""
    import textwrap

    chars = max(16, int(width_in * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) if line else "" for line in text.split("\n"))


def _fit(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """``a`` (HWC) scaled by nearest neighbour to fit an ``h`` x ``w`` cell (aspect kept), so
    that images of different sizes (MNIST 28 px, Tiny ImageNet 64 px) fill equal cells."""
    s = min(h / a.shape[0], w / a.shape[1])
    nh, nw = max(1, round(a.shape[0] * s)), max(1, round(a.shape[1] * s))
    if (nh, nw) == a.shape[:2]:
        return a
    rows = np.minimum((np.arange(nh) / s).astype(int), a.shape[0] - 1)
    cols = np.minimum((np.arange(nw) / s).astype(int), a.shape[1] - 1)
    return a[rows][:, cols]


def draw_montage(cells: Sequence[Sequence[Any]], row_labels: Sequence[str], col_labels: Sequence[str], *,
                 title: str, notes: Sequence[Sequence[str]] | None = None, cell_in: float = 0.9,
                 left_in: float = 1.5, min_width_in: float = 4.5, fontsize: float = 8.0,
                 note_size: float = 5.5):
    """A grid of images as one montage (one ``imshow``: fast and crisp) at its true aspect
    ratio (``aspect="equal"``, the axes box sized to the montage, so no image is stretched).

    ``cells[i][j]``: an HWC (or HW) array in [0, 1], or None (drawn grey, labelled
    "missing"); images of different sizes are scaled (nearest neighbour) to equal cells;
    ``notes[i][j]``: text (lines split by newlines) drawn in a band under the image, e.g. its
    metric value.  The title is wrapped to the figure's width and the left margin fits the
    longest row label, so no text is clipped."""
    rows = [[None if c is None else _as_rgb(c) for c in row] for row in cells]
    nr, nc = len(rows), max(1, max((len(r) for r in rows), default=1))
    imgs = [a for row in rows for a in row if a is not None]
    h = max((a.shape[0] for a in imgs), default=32)
    w = max((a.shape[1] for a in imgs), default=32)
    px_in = cell_in / w                                         # inches per montage pixel
    pad = max(1, round(max(h, w) / 16))
    lines = max((str(t).count("\n") + 1 for row in (notes or []) for t in row if t), default=0)
    band = math.ceil((lines * note_size * 1.3 / 72 + 0.04) / px_in) if lines else 0
    pitch_y, pitch_x = h + band + pad, w + pad
    mont = np.ones((nr * pitch_y - pad, nc * pitch_x - pad, 3))
    missing = []
    for i, row in enumerate(rows):
        for j in range(nc):
            a = row[j] if j < len(row) else None
            y0, x0 = i * pitch_y, j * pitch_x
            if a is None:
                mont[y0:y0 + h, x0:x0 + w] = 0.85
                missing.append((x0 + w / 2, y0 + h / 2))
            else:
                a = _fit(a, h, w)
                dy, dx = (h - a.shape[0]) // 2, (w - a.shape[1]) // 2
                mont[y0 + dy:y0 + dy + a.shape[0], x0 + dx:x0 + dx + a.shape[1]] = a
    ax_w, ax_h = mont.shape[1] * px_in, mont.shape[0] * px_in
    left_in = max(left_in, max((len(str(r)) for r in row_labels), default=0) * 7 * 0.62 / 72 + 0.25)
    width = max(min_width_in, left_in + ax_w + 0.15)
    wrapped = wrap_title(title, width - 0.2, fontsize)
    n_lines = wrapped.count("\n") + 1
    title_in = n_lines * fontsize * 1.35 / 72 + 0.12
    collab_in = 0.22 if any(col_labels) else 0.05
    height = title_in + collab_in + ax_h + 0.1
    fig = _figure(width, height, layout=None)
    x_left = left_in + max(0.0, (width - left_in - 0.15 - ax_w) / 2)   # centred when the title sets the width
    ax = fig.add_axes((x_left / width, 0.1 / height, ax_w / width, ax_h / height))
    ax.imshow(mont, vmin=0, vmax=1, interpolation="nearest", aspect="equal")
    ax.set_xlim(-0.5, mont.shape[1] - 0.5)
    ax.set_ylim(mont.shape[0] - 0.5, -0.5)
    ax.set_xticks([j * pitch_x + w / 2 for j in range(len(col_labels))], list(col_labels), fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([i * pitch_y + h / 2 for i in range(nr)], list(row_labels), fontsize=7)
    ax.tick_params(length=0)
    for sp in ax.spines.values():
        sp.set_visible(False)
    for x, y in missing:
        ax.text(x, y, "missing", ha="center", va="center", fontsize=6)
    for i, row in enumerate(notes or []):
        for j, t in enumerate(row):
            if t:
                ax.text(j * pitch_x + w / 2, i * pitch_y + h + band / 2, t, ha="center", va="center",
                        fontsize=note_size, color="black", linespacing=1.1)
    fig.suptitle(wrapped, fontsize=fontsize, x=0.5, y=1 - 0.06 / height, ha="center", va="top")
    return fig


def _thin_symlog_ticks(ax, values: np.ndarray) -> None:
    """A symlog y axis with a linear threshold at the data's smallest decade and at most ~6
    ticks, every few decades (matplotlib's default linthresh and locator crowd the labels
    near zero and over many decades)."""
    from matplotlib.ticker import FixedLocator, LogFormatterSciNotation, NullLocator

    finite = np.abs(values[np.isfinite(values) & (values != 0)])
    if finite.size == 0:
        return
    lo = math.floor(math.log10(finite.min()))
    hi = math.ceil(math.log10(finite.max()))
    ax.set_yscale("symlog", linthresh=10.0 ** lo, linscale=0.5)
    step = max(1, math.ceil((hi - lo + 1) / 3))
    decades = list(range(hi, lo - 1, -step))
    ticks = [0.0] + [10.0 ** k for k in decades]
    if (values[np.isfinite(values)] < 0).any():
        ticks += [-(10.0 ** k) for k in decades]
    ax.yaxis.set_major_locator(FixedLocator(sorted(ticks)))
    ax.yaxis.set_major_formatter(LogFormatterSciNotation(base=10, labelOnlyBase=False,
                                                         linthresh=10.0 ** lo))
    ax.yaxis.set_minor_locator(NullLocator())


# ------------------------------------------------------------------ legends and image arrays

def _figure_legend(fig, axes) -> None:
    """One legend right of the panels with every labelled line of ``axes`` (each label once)."""
    handles, labels = [], []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside right center", fontsize=7, frameon=False)


def _as_image(a: Any) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.transpose(a, (1, 2, 0))          # CHW -> HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return np.clip(a, 0.0, 1.0)


def _as_rgb(a: Any) -> np.ndarray:
    a = _as_image(a)
    return np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a[..., :3]
