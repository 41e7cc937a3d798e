"""Issue 24 item 2: figures a reader understands at a glance.  Each figure function is drawn on
constructed inputs and the drawn figure is inspected (matplotlib's own layout after a draw):
titles inside the figure, a value under every reconstruction, images at their true aspect ratio,
symlog tick labels that do not overlap, PSNR with its unit, the protection threshold in the
legend, no empty panels, FedAvg bands only over several seeds and defense names as the tables
write them."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gibench.tables import figures as F
from gibench.tables import he_overhead as HE
from gibench.tables.selective_encryption import figures as SEF

from se_table_rows import CONFIG, SLOTS, synthetic_rows


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plotting functions save, drawn (instead of written to disk)."""
    figs = []

    def keep(fig, out_dir, name, formats=F.FORMATS, dpi=150):
        fig.canvas.draw()
        figs.append(fig)
        return []

    monkeypatch.setattr(F, "save_figure", keep)
    monkeypatch.setattr(SEF, "save_figure", keep)
    monkeypatch.setattr(HE, "save_figure", keep)
    return figs


def _inside(fig, artist, tol=1.0) -> bool:
    r = fig.canvas.get_renderer()
    bb, fb = artist.get_window_extent(r), fig.bbox
    return bb.x0 >= fb.x0 - tol and bb.x1 <= fb.x1 + tol and bb.y0 >= fb.y0 - tol and bb.y1 <= fb.y1 + tol


def _texts(fig) -> list[str]:
    out = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return [t for t in out if t]


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for leg in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
            for t in leg.get_texts()]


LONG = ("a long title that would not fit a narrow figure: " * 4).strip()


def test_montage_title_fits_images_keep_their_aspect_and_cells_carry_values():
    rng = np.random.default_rng(0)
    cells = [[rng.random((32, 32, 3))], [rng.random((32, 32))], [None]]     # one victim: a narrow grid
    notes = [[""], ["PSNR 12.3 dB"], [""]]
    fig = F.draw_montage(cells, ["truth", "a", "b"], ["s000"], title=LONG, notes=notes)
    fig.canvas.draw()
    assert _inside(fig, fig._suptitle)
    (ax,) = fig.axes
    assert ax.get_aspect() == 1.0                    # "equal", not "auto"
    # the axes box has the montage's own width:height, so a pixel is as wide as it is high
    img = ax.get_images()[0].get_array()
    bb = ax.get_window_extent(fig.canvas.get_renderer())
    assert bb.width / bb.height == pytest.approx(img.shape[1] / img.shape[0], rel=0.02)
    assert "PSNR 12.3 dB" in _texts(fig) and "missing" in _texts(fig)
    for label in ax.get_yticklabels():
        assert _inside(fig, label)


def test_montage_of_mixed_sizes_fills_its_cells_and_keeps_labels_and_values_apart():
    rng = np.random.default_rng(2)
    small, large = 0.2 + 0.6 * rng.random((28, 28)), 0.2 + 0.6 * rng.random((64, 64, 3))   # MNIST, Tiny ImageNet
    notes = [["", "PSNR 160.3 dB\nSSIM 1.00", "PSNR 8.44 dB\nSSIM 6.1e-03"]] * 2
    fig = F.draw_montage([[small, small, small], [large, large, large]],
                         ["GS on MNIST", "Imprint on TinyImageNet"], ["sensitive image", "None", "DP-Gaussian"],
                         title="t", notes=notes, cell_in=0.95, left_in=0.5)
    fig.canvas.draw()
    (ax,) = fig.axes
    mont = ax.get_images()[0].get_array()
    # the 28-px image is scaled up to the 64-px cell: no white (1.0) pixel inside its cell
    assert not (np.asarray(mont[:64, :64]) >= 0.999).all(axis=-1).any()
    for label in ax.get_yticklabels():                        # the long row label is not clipped
        assert _inside(fig, label)
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in ax.texts if "PSNR" in t.get_text()]
    assert len(boxes) == 4
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_grid_figure_shows_the_kept_restarts_value_under_each_reconstruction(drawn):
    rng = np.random.default_rng(1)
    truth = {s: rng.random((32, 32, 3)) for s in SLOTS}
    SEF.build_grid_figure(metrics_path=synthetic_rows(), config=CONFIG, model="lenet", dataset="cifar100",
                        attack="ig", out_dir=".", recon_provider=lambda row: rng.random((32, 32, 3)),
                        truth_provider=lambda d, s: truth[s], slots=["s000"], ratios=[0.2])
    (fig,) = drawn
    texts = _texts(fig)
    # the kept restart (restart 1) of lenet/grad at ratio 0.2, victim s000, has LPIPS ABOVE[0] = 0.20;
    # ratio 0 (the shared "any" row) LOW[0] = 0.01
    assert "LPIPS 0.20" in texts and "LPIPS 0.01" in texts
    assert _inside(fig, fig._suptitle) and fig.axes[0].get_aspect() == 1.0


def test_curves_label_psnr_in_db_and_put_the_threshold_in_the_legend(drawn):
    SEF.plot_curves(synthetic_rows(), CONFIG, model="lenet", dataset="cifar100", attack="ig", out_dir=".")
    (fig,) = drawn
    ylabels = [ax.get_ylabel() for ax in fig.axes]
    assert "PSNR [dB]" in ylabels and "LPIPS" in ylabels
    assert "protected: LPIPS ≥ 0.3" in _legend_texts(fig)
    assert _inside(fig, fig._suptitle)


def test_curves_title_with_a_long_unavailable_reason_stays_inside(drawn):
    rows = synthetic_rows(lpips_available=False)
    for r in rows:
        r["lpips_status"] = "unavailable: " + LONG
    SEF.plot_curves(rows, CONFIG, model="cnn", dataset="cifar100", attack="ig", out_dir=".")
    (fig,) = drawn
    assert "LPIPS unavailable" in fig._suptitle.get_text()
    assert _inside(fig, fig._suptitle)


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_symlog_trace_ticks_do_not_overlap(drawn):
    it = np.arange(0, 24000, 100)
    # a loss over 26 decades that reaches zero and goes negative (a diverging, then converging trace)
    loss = np.concatenate([np.logspace(16, -10, len(it) - 20), np.zeros(10), -np.logspace(-3, 0, 10)])
    traces = {(m, r): {"iteration": it, "loss": loss * (1 + r)} for m in ("grad", "prodsig", "sens", "param")
              for r in (0.0, 0.1, 0.3)}
    SEF.plot_traces(traces, model="lenet", dataset="cifar100", attack="dlg", slot="s000", out_dir=".")
    (fig,) = drawn
    r = fig.canvas.get_renderer()
    checked = 0
    for ax in fig.axes:
        if not ax.axison or ax.get_yscale() != "symlog":
            continue
        lo, hi = sorted(ax.get_ylim())
        labels = [t for t, v in zip(ax.get_yticklabels(), ax.get_yticks())
                  if t.get_visible() and t.get_text() and lo <= v <= hi]
        if not labels:                                     # a panel sharing the first one's y axis
            continue
        checked += 1
        assert 3 <= len(labels) <= 8
        boxes = [t.get_window_extent(r) for t in labels]
        assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert checked >= 1
    assert _inside(fig, fig._suptitle)


def _overhead_rows():
    rows = []
    for model in ("lenet", "bert"):
        for metric, ratio in (("any", 0.0), ("grad", 0.3), ("any", 1.0)):
            n = 1000
            rows.append({"study": "selective_encryption", "dataset": "cifar100" if model == "lenet" else "cola",
                         "model": model, "metric": metric, "ratio": ratio, "status": "ok",
                         "n_entries": n, "n_encrypted": int(ratio * n), "he_round_s": 1 + ratio,
                         "plain_round_s": 0.5, "message_bytes": 1e6 * (1 + 10 * ratio),
                         "plain_update_bytes": 4000, "n_clients": 2, "device": "cpu"})
    return rows


def test_he_cost_figure_has_no_empty_panel(drawn):
    cfg = {"studies": {"selective_encryption": {
        **CONFIG["studies"]["selective_encryption"],
        "cases": [{"dataset": "cifar100", "model": "lenet"}, {"dataset": "cola", "model": "bert"}],
        "attacks": {"ig": {"restarts": 3}, "lamp": {"restarts": 1}}}}}
    # protection rows: IG on the image case only (LAMP on the text case has no rows here)
    prot = [r for r in synthetic_rows() if r["model"] == "lenet"]
    HE.plot_he_cost_vs_protection(_overhead_rows(), prot, cfg, out_dir=".")
    (fig,) = drawn
    for ax in fig.axes:
        if ax.axison:                                      # every visible panel draws something
            assert ax.lines or ax.collections, ax.get_title()
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 2 + 1 + 2                       # lenet: time, bytes, IG; bert: time, bytes
    assert "protected: ≥ 0.3" in _legend_texts(fig) and _inside(fig, fig._suptitle)


def test_fl_curves_band_only_over_several_seeds_and_registry_names():
    from gibench.pipeline import jobs_fl

    def run(defense, seed):
        return [{"dataset": "mnist", "model": "sd_cnn", "defense": defense, "seed": seed, "round": k,
                 "test_acc": 0.5 + 0.1 * k + 0.01 * seed, "mean_val_loss": 1.0 / (k + 1)} for k in range(3)]

    figs = []
    orig = F.save_figure
    F.save_figure = lambda fig, *a, **k: figs.append(fig) or []
    try:
        jobs_fl.plot_fl_curves([run("none", 0), run("dropout+dp", 0), run("dropout+dp", 1)], ".",
                               labels={"none": "no defense", "dropout+dp": "DO+DP"})
    finally:
        F.save_figure = orig
    (fig,) = figs
    acc = fig.axes[0]
    labels = [t.get_text() for t in acc.get_legend().get_texts()]
    assert labels == ["no defense (1 seed)", "DO+DP (2 seeds, ± std)"]
    assert len([c for c in acc.collections if len(c.get_paths())]) == 1        # one band: DO+DP's


def test_defense_label_is_the_registry_notation():
    from gibench.pipeline import jobs_fl

    cfg = {"studies": {"stochastic_defenses": {"fl": {"runs": []}}}}
    assert jobs_fl.defense_label(cfg, "stochastic_defenses", "dropout+dp") == "DO+DP"
    assert jobs_fl.defense_label(cfg, "stochastic_defenses", "dp+cvb") == "DP+C"
    assert jobs_fl.defense_label(cfg, "stochastic_defenses", "none") == "no defense"


def test_metric_value_text_units():
    assert F.metric_value_text("psnr", 12.345) == "PSNR 12.3 dB"
    assert F.metric_value_text("lpips", 0.4149) == "LPIPS 0.41"
    assert F.metric_value_text("ssim", None) == ""
    assert F.metric_label("psnr") == "PSNR [dB]" and F.metric_label("ssim") == "SSIM"
    assert math.isclose(len(F.wrap_title("x " * 200, 3.0, 9).split("\n")[0]), 3.0 * 72 / (0.6 * 9), abs_tol=3)
