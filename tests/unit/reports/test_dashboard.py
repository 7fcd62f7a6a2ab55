"""The 6-panel dashboard PNG and the self-contained HTML report."""
from __future__ import annotations

import re
import struct

import numpy as np
import pytest

from tabpipe.reports.dashboard import PANELS, TREND_LABELS, TREND_WINDOWS, figure, trend_labels, write_html, write_png


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def panel_texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(int)
    proba = np.clip(0.3 * y + rng.random(2000) * 0.7, 0, 1)
    return y, proba


def test_full_dashboard_has_six_drawn_panels(scored, tmp_path):
    y, proba = scored
    fig = figure(proba=proba, y=y, threshold=0.5, trend=[{"window": "w1", "realised": 0.8, "estimated": 0.79},
                                                         {"window": "w2", "realised": None, "estimated": 0.7}],
                 psi={"a": 0.05, "b": 0.15, "c": 0.4, "d": None})
    axes = fig.get_axes()
    assert len(axes) == 6
    assert [ax.get_title().split(" (")[0] for ax in axes] == list(PANELS)
    assert len(axes[0].lines) == 2 and len(axes[1].lines) >= 1          # ROC + diagonal, PR curve
    assert axes[2].images and "pred. positive" in [t.get_text() for t in axes[2].get_xticklabels()]
    assert len(axes[4].lines) == 3                                      # realised, estimated, the 0.70 line
    assert len(axes[5].patches) == 4 and "d (too few rows)" in [t.get_text() for t in axes[5].get_yticklabels()]
    path = write_png(fig, tmp_path / "d.png")
    assert png_size(path) == (1280, 760)


def test_a_long_history_shows_the_latest_windows_with_labels_that_do_not_overlap(scored):
    y, proba = scored
    trend = [{"window": f"w{i}", "realised": 0.8, "estimated": 0.7 + i / 10_000} for i in range(200)]
    ax = figure(proba=proba, y=y, threshold=0.5, trend=trend, psi={"a": 0.05}).get_axes()[4]
    assert "(latest 30; 170 earlier not shown)" in ax.get_title()
    realised, estimated = ax.lines[:2]
    assert len(realised.get_xdata()) == TREND_WINDOWS and list(estimated.get_ydata()) == [
        t["estimated"] for t in trend[-TREND_WINDOWS:]]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert 1 < len(labels) <= TREND_LABELS and labels[-1] == "w199"
    assert all(label.startswith("w") and int(label[1:]) >= 170 for label in labels)


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 30, 31])
def test_trend_labels_are_few_evenly_spaced_and_end_at_the_latest(n):
    shown = trend_labels(n)
    assert shown[-1] == n - 1 and len(shown) <= TREND_LABELS and shown == sorted(set(shown))
    assert len({b - a for a, b in zip(shown, shown[1:])}) <= 1       # one spacing
    if n <= TREND_LABELS:
        assert shown == list(range(n))                                # few windows: every one labelled


def test_panels_without_data_say_so(scored, tmp_path):
    _, proba = scored
    fig = figure(proba=proba, y=None, threshold=0.5, trend=[], psi=None)
    axes = fig.get_axes()
    assert len(axes) == 6
    for ax in axes[:3]:
        assert "no outcomes" in panel_texts(ax)
    assert "no monitoring windows recorded yet" in panel_texts(axes[4])
    assert "no feature was binned" in panel_texts(axes[5])
    assert axes[3].patches                                              # the distribution is still drawn
    nothing = figure(proba=np.array([]), y=None, threshold=0.5)
    assert "no scored rows" in panel_texts(nothing.get_axes()[0])
    assert png_size(write_png(nothing, tmp_path / "e.png")) == (1280, 760)


def test_monitoring_signals_are_written_on_the_psi_and_trend_panels(scored):
    y, proba = scored
    fig = figure(proba=proba, y=y, threshold=0.5, psi={"a": 0.01},
                 multivariate={"status": "ok", "auc": 0.91, "threshold": 0.54},
                 concept={"status": "ok", "gap": -0.31, "ci": [-0.35, -0.27]})
    axes = fig.get_axes()
    assert "multivariate drift: domain AUC\n0.910 > 0.540" in panel_texts(axes[5])
    assert "-0.310 [-0.350, -0.270]" in panel_texts(axes[4]) and "excludes 0" in panel_texts(axes[4])
    quiet = figure(proba=proba, y=y, threshold=0.5, psi={"a": 0.01},
                   multivariate={"status": "ok", "auc": 0.51, "threshold": 0.54},
                   concept={"status": "no_outcomes", "gap": None})
    assert "multivariate: domain AUC\n0.510 <= 0.540" in panel_texts(quiet.get_axes()[5])
    assert "concept: not measured\n(no_outcomes)" in panel_texts(quiet.get_axes()[4])
    training = figure(proba=proba, y=y, threshold=0.5, psi={"a": 0.01})     # a training report: neither line
    assert "multivariate" not in panel_texts(training.get_axes()[5])
    assert "concept" not in panel_texts(training.get_axes()[4])


def test_one_class_only_is_treated_as_unlabelled(scored):
    _, proba = scored
    fig = figure(proba=proba, y=np.zeros(len(proba), int), threshold=0.5)
    assert "no outcomes" in panel_texts(fig.get_axes()[0])


def test_html_report_is_self_contained(scored, tmp_path):
    y, proba = scored
    png = write_png(figure(proba=proba, y=y, threshold=0.5), tmp_path / "d.png")
    page = write_html(tmp_path / "r.html", title="report <x>", png=png, metrics={"roc_auc": 0.81234},
                      model_card={"version": "v0001"}, drift={"psi max": 0.3}, quality={"null rate": 0.01},
                      decision={"decision": "retrain", "reasons": [{"message": "PSI of a = 0.3 >= 0.2"}],
                                "not_checked": ["drift_share: none"]},
                      evidently_html=str(tmp_path / "drift" / "drift_report.html")).read_text()
    assert "data:image/png;base64," in page and "report &lt;x&gt;" in page
    assert "0.8123" in page and "v0001" in page and "PSI of a = 0.3 &gt;= 0.2" in page
    # linked relative to the report (it is served at /dashboard: no server path in it)
    assert "href='drift/drift_report.html'" in page and str(tmp_path) not in page
    assert "not checked: drift_share: none" in page
    assert not re.search(r"<(script|link)\b", page) and "src='http" not in page


def test_a_binned_window_draws_the_same_panels_from_its_bins(scored, tmp_path):
    from tabpipe.monitoring.score_sketch import ScoreSketch

    y, proba = scored
    sketch = ScoreSketch(threshold=0.5).add(proba, np.ones(len(y), dtype=bool), y)
    binned = figure(proba=None, y=None, binned=sketch, threshold=0.5, psi={"a": 0.05}).get_axes()
    exact = figure(proba=proba, y=y, threshold=0.5, psi={"a": 0.05}).get_axes()
    assert [ax.get_title() for ax in binned] == [ax.get_title() for ax in exact]
    assert binned[0].get_legend().get_texts()[0].get_text() == exact[0].get_legend().get_texts()[0].get_text()
    assert [t.get_text() for t in binned[2].texts] == [t.get_text() for t in exact[2].texts]      # confusion counts
    heights = lambda ax: [p.get_height() for p in ax.patches]   # noqa: E731
    assert heights(binned[3]) == pytest.approx(heights(exact[3]), abs=0.05)
    unlabelled = ScoreSketch(threshold=0.5).add(proba)
    axes = figure(proba=None, y=None, binned=unlabelled, threshold=0.5).get_axes()
    assert "no outcomes" in panel_texts(axes[0]) and axes[3].patches
    assert png_size(write_png(figure(proba=None, y=None, binned=unlabelled, threshold=0.5), tmp_path / "b.png")) == (1280, 760)
