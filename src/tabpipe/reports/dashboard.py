"""Dashboards: a 6-panel PNG and a self-contained HTML report, for training and monitoring runs.

Panels (2 x 3, matplotlib's Agg backend, no display needed): ROC curve, precision-recall curve,
confusion matrix at the model's threshold, probability distribution by class, metric trend across
monitoring windows (realised and estimated ROC-AUC; for a monitoring window with outcomes, the
concept-drift gap between them with its interval), PSI per feature (with the watch / retrain lines;
for a monitoring window, the multivariate domain-classifier AUC and its threshold above). A panel
without the data it needs says so in the panel instead of being left out, so the figure always has
the same six places. The HTML report embeds the PNG (base64) and carries
the metrics, a model card, the drift and data-quality summaries and a link to the evidently
report; it needs no other file to display.
"""
from __future__ import annotations

import base64
import html
import json
import os
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tabpipe.ranked import RankedScores  # noqa: E402

TREND_WINDOWS = 30    # the trend panel shows the latest windows (hourly monitoring records 8,760 a year)
TREND_LABELS = 8      # at most this many window labels under it, so they never overlap
PANELS = ("ROC curve", "Precision-recall curve", "Confusion matrix", "Probability by class",
          "Metric trend across windows", "PSI per feature")


def _empty(ax, title: str, message: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=10, color="#555555",
            transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _has_both_classes(y) -> bool:
    return y is not None and len(y) > 0 and 0 < int(np.sum(y)) < len(y)


def figure(*, proba: np.ndarray | None, y: np.ndarray | None, threshold: float,
           trend: Sequence[Mapping] = (), psi: Mapping[str, float | None] | None = None,
           psi_lines: tuple[float, float] = (0.1, 0.2), auc_line: float = 0.70, title: str = "",
           multivariate: Mapping | None = None, concept: Mapping | None = None, binned=None):
    """The 6-panel figure. ``trend``: rows ``{"window", "realised", "estimated"}`` (ROC-AUC, None if
    unknown), oldest first; ``psi``: feature -> PSI (None = insufficient data); ``psi_lines`` (watch,
    retrain) and ``auc_line`` are the governance thresholds drawn on the panels. ``multivariate`` /
    ``concept``: a monitoring run's ``"multivariate"`` and ``"concept"`` results, written on the PSI and
    trend panels (None: nothing written). ``binned``: the scores as a ``ScoreSketch`` (a monitoring window
    beyond ``monitoring.exact_rows``) instead of ``proba`` and ``y``: its curves, counts and histograms."""
    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    ax_roc, ax_pr, ax_cm, ax_dist, ax_trend, ax_psi = axes.ravel()
    proba = None if proba is None else np.asarray(proba, dtype=float)
    bins = np.linspace(0, 1, 41)
    if binned is not None:      # (negatives, positives, all scored) per bin of the distribution panel
        histograms = binned.histogram(bins)
        labelled = 0 < histograms[1].sum() < binned.labelled_rows
        base_rate = histograms[1].sum() / max(binned.labelled_rows, 1)
        scored_any = binned.scored_rows > 0
    else:
        labelled = _has_both_classes(y) and proba is not None
        base_rate = float(np.mean(y)) if labelled else float("nan")
        scored_any = proba is not None and len(proba) > 0
    no_outcomes = "no outcomes (labels) for these rows:\nsee the label-free estimate"

    if labelled:
        # one ranking: both curves (2,000 points each), AUC, counts
        ranked = binned if binned is not None else RankedScores.of(y, proba)
        curves = ranked.curves()
        ax_roc.plot(curves["fpr"], curves["tpr"], lw=2, label=f"ROC-AUC {ranked.roc_auc():.3f}")
        ax_roc.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
        ax_roc.set(title=PANELS[0], xlabel="false positive rate", ylabel="true positive rate")
        ax_roc.legend(loc="lower right")
        ax_pr.plot(curves["recall"], curves["precision"], lw=2)
        ax_pr.axhline(base_rate, ls="--", color="grey", lw=1, label=f"base rate {base_rate:.3f}")
        ax_pr.set(title=PANELS[1], xlabel="recall", ylabel="precision", ylim=(0, 1.02))
        ax_pr.legend(loc="upper right")
        counts = ranked.confusion(threshold)
        cm = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
        ax_cm.imshow(cm, cmap="Blues")
        for (i, j), count in np.ndenumerate(cm):
            ax_cm.text(j, i, f"{count:,}", ha="center", va="center",
                       color="white" if count > cm.max() / 2 else "black", fontsize=13)
        ax_cm.set(title=f"{PANELS[2]} (threshold {threshold:.3f})", xticks=[0, 1], yticks=[0, 1],
                  xticklabels=["pred. negative", "pred. positive"], yticklabels=["negative", "positive"])
    else:
        for ax, name in ((ax_roc, PANELS[0]), (ax_pr, PANELS[1]), (ax_cm, PANELS[2])):
            _empty(ax, name, no_outcomes if scored_any else "no scored rows")

    if not scored_any:
        _empty(ax_dist, PANELS[3], "no scored rows")
    else:
        if binned is not None:  # the counts drawn as histograms: one weighted point per bin
            centres = (bins[:-1] + bins[1:]) / 2
            negative, positive, every = ({"x": centres, "weights": c} for c in histograms)
        else:
            negative, positive = ({"x": proba[np.asarray(y) == v]} for v in (0, 1)) if labelled else ({}, {})
            every = {"x": proba}
        if labelled:
            ax_dist.hist(**negative, bins=bins, alpha=0.6, density=True, label="negative")
            ax_dist.hist(**positive, bins=bins, alpha=0.6, density=True, label="positive")
        else:
            ax_dist.hist(**every, bins=bins, alpha=0.7, density=True, label="all rows (no outcomes)")
        ax_dist.axvline(threshold, color="black", ls="--", lw=1, label="threshold")
        ax_dist.set(title=PANELS[3], xlabel="probability of the positive class", ylabel="density")
        ax_dist.legend()

    points = [t for t in trend if _finite(t.get("realised")) or _finite(t.get("estimated"))]
    if not points:
        _empty(ax_trend, PANELS[4], "no monitoring windows recorded yet")
    else:
        earlier, points = max(len(points) - TREND_WINDOWS, 0), points[-TREND_WINDOWS:]
        x = np.arange(len(points))
        for key, style in (("realised", "o-"), ("estimated", "s--")):
            values = [t.get(key) if _finite(t.get(key)) else np.nan for t in points]
            if any(_finite(v) for v in values):
                ax_trend.plot(x, values, style, label=f"ROC-AUC {key}")
        shown = trend_labels(len(points))
        ax_trend.set_xticks(x[shown], [str(points[i].get("window", i))[:16] for i in shown], rotation=30,
                            ha="right", fontsize=8)
        seen = [v for t in points for v in (t.get("realised"), t.get("estimated")) if _finite(v)]
        ax_trend.axhline(auc_line, color="#d62728", ls=":", lw=1, label=f"retrain below {auc_line:g}")
        ax_trend.set_ylim(max(0.0, min(min(seen), auc_line) - 0.05), min(1.0, max(seen) + 0.05))
        ax_trend.set(title=PANELS[4] + (f" (latest {len(points)}; {earlier} earlier not shown)" if earlier else ""),
                     ylabel="ROC-AUC")
        ax_trend.legend()

    if not psi:
        _empty(ax_psi, PANELS[5], "no feature was binned\n(no reference profile or no rows)")
    else:
        names = sorted(psi, key=lambda n: (psi[n] is None, -(psi[n] or 0.0), n))[:30]
        values = [psi[n] if psi[n] is not None else 0.0 for n in names]
        colours = ["#bbbbbb" if psi[n] is None else "#d62728" if psi[n] >= psi_lines[1]
                   else "#ff7f0e" if psi[n] >= psi_lines[0] else "#2ca02c" for n in names]
        y_pos = np.arange(len(names))[::-1]
        ax_psi.barh(y_pos, values, color=colours)
        ax_psi.set_yticks(y_pos, [n + (" (too few rows)" if psi[n] is None else "") for n in names], fontsize=8)
        for line, label in zip(psi_lines, ("watch", "retrain")):
            ax_psi.axvline(line, color="black", ls=":", lw=1)
            ax_psi.text(line, len(names) - 0.4, label, fontsize=8)
        ax_psi.set(title=PANELS[5], xlabel="PSI against the training profile")
    for ax, line in ((ax_psi, multivariate_line(multivariate)), (ax_trend, concept_line(concept))):
        if line:
            ax.text(0.02, 0.98, line, transform=ax.transAxes, ha="left", va="top", fontsize=8,
                    bbox={"boxstyle": "round", "facecolor": "#fff3cd" if line.startswith("multivariate drift") or "excludes 0" in line
                          else "white",
                          "edgecolor": "#cccccc"})
    if title:
        fig.suptitle(title, fontsize=14)
    fig.tight_layout()
    return fig


def trend_labels(n: int) -> list[int]:
    """Which of ``n`` windows get a label under the trend panel: at most ``TREND_LABELS``, evenly spaced, always
    the latest (the window of this run)."""
    step = max(math.ceil(n / TREND_LABELS), 1)
    return sorted({*range(n - 1, -1, -step)})


def multivariate_line(result: Mapping | None) -> str:
    """Lines on the PSI panel: the domain classifier's AUC against its threshold, or why it is absent."""
    if not result:
        return ""
    if not _finite(result.get("auc")):
        return f"multivariate: not measured\n({result.get('status', 'n/a')})"
    drifted = result["auc"] > result["threshold"]
    return (f"multivariate{' drift' if drifted else ''}: domain AUC\n{result['auc']:.3f} "
            f"{'>' if drifted else '<='} {result['threshold']:.3f} (no-shift threshold)")


def concept_line(result: Mapping | None) -> str:
    """Lines on the trend panel: this window's realised - estimated ROC-AUC with its interval."""
    if not result:
        return ""
    if not _finite(result.get("gap")):
        return f"concept: not measured\n({result.get('status', 'n/a')})"
    low, high = result["ci"]
    outside = low > 0 or high < 0
    return (f"concept: realised - estimated ROC-AUC\n{result['gap']:+.3f} [{low:+.3f}, {high:+.3f}] this window"
            + ("\n(interval excludes 0)" if outside else ""))


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def write_png(fig, path: Path) -> Path:
    """Save ``fig`` as a PNG at ``path`` (folders made) and close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _table(rows: Mapping) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{cells}</table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else "n/a"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return "n/a" if value is None else str(value)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left;
vertical-align:top}th{background:#f3f3f3}.decision{font-size:1.4em;padding:.4em .8em;display:inline-block;
border-radius:.3em}.ok{background:#d9f2d9}.watch{background:#ffe9c2}.retrain{background:#f8d0d0}
img{max-width:100%;border:1px solid #ddd}"""


def write_html(path: Path, *, title: str, png: Path, metrics: Mapping, model_card: Mapping,
               drift: Mapping, quality: Mapping, decision: Mapping | None = None,
               evidently_html: str | None = None, notes: Sequence[str] = (),
               links: Mapping[str, str] | None = None, segments: Sequence[Mapping] = ()) -> Path:
    """A self-contained HTML report (the PNG is embedded). Files it names are given relative to the
    report's folder: the report is served at ``/dashboard``, and server paths are nobody's business.
    ``links``: text -> relative address (e.g. the model card); ``segments``: rows of a per-segment table
    (``column``, ``segment``, ``rows``, ``positives`` and metric values)."""
    path = Path(path)
    image = base64.b64encode(Path(png).read_bytes()).decode()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><h1 id='title'>{html.escape(title)}</h1>"]
    if decision is not None:
        level = str(decision.get("decision", "ok"))
        parts.append(f"<p id='decision' class='decision {html.escape(level)}'>decision: {html.escape(level)}</p>")
        reasons = decision.get("reasons") or []
        if reasons:
            parts.append("<ul id='reasons'>" + "".join(f"<li>{html.escape(r['message'])}</li>" for r in reasons) + "</ul>")
        for note in decision.get("not_checked") or []:
            parts.append(f"<p class='note'>not checked: {html.escape(note)}</p>")
    parts.append(f"<img id='dashboard' alt='6-panel dashboard' src='data:image/png;base64,{image}'>")
    parts.append("<h2>Metrics</h2>" + _table(metrics))
    parts.append("<h2>Model card</h2>" + _table(model_card))
    for text, href in (links or {}).items():
        parts.append(f"<p><a class='model-card' href='{html.escape(href)}'>{html.escape(text)}</a></p>")
    if segments:
        head = list(segments[0])
        parts.append("<h2 id='segments'>Segments</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
                     + "</tr>" + "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(h)))}</td>" for h in head)
                                         + "</tr>" for row in segments) + "</table>")
    parts.append("<h2>Drift</h2>" + _table(drift))
    if evidently_html:
        link = os.path.relpath(evidently_html, path.parent)
        parts.append(f"<p><a id='evidently' href='{html.escape(link)}'>evidently drift report</a></p>")
    parts.append("<h2>Data quality</h2>" + _table(quality))
    for note in notes:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts))
    return path


def write_training_report(out_dir: Path, *, validation, trainer, evaluation, rows) -> dict:
    """Dashboard PNG + HTML of a training run, on the test split's predictions (used by the pusher).

    ``validation``/``trainer``/``evaluation`` are the run's artifact entities, ``rows`` its ``RowFiles``;
    returns the paths.
    Written before the pusher publishes, so the version number is in ``push.json``, not here.
    """
    status = "accepted: published by this run (version in push.json)" if evaluation.accepted else "not accepted"
    import dill

    from tabpipe.drift.profile import test_predictions

    with open(trainer.model_path, "rb") as fh:
        model = dill.load(fh)  # nosec B301 -- the run's own model file, written by its trainer stage
    y, proba = test_predictions(rows.read_frame(validation.test_path), model)
    png = write_png(figure(proba=proba, y=y, threshold=model.threshold,
                           title=f"training run: test split ({len(y)} rows), candidate {trainer.best_candidate}"),
                    Path(out_dir) / "dashboard.png")
    report = write_html(
        Path(out_dir) / "report.html", title=f"tabpipe training report — {trainer.best_candidate}", png=png,
        metrics={k: v for k, v in evaluation.metrics.items()},
        model_card={"publication": status, "candidate": trainer.best_candidate,
                    "params": dict(trainer.best_params), "cv score": trainer.cv_score, "threshold": trainer.threshold,
                    "configurations tried": trainer.configs_tried, "accepted": evaluation.accepted,
                    "decision": evaluation.reason, "production before": evaluation.production_version,
                    "labels": list(model.labels), "features": ", ".join(model.features)},
        drift={"status": validation.drift_status, "drift share": validation.drift_share},
        evidently_html=str(validation.drift_html) if validation.drift_html else None,
        quality={"training rows": validation.n_train, "test rows": validation.n_test,
                 "rows dropped (schema)": validation.rows_dropped, "validation report": os.path.relpath(validation.report_path, out_dir)},
        notes=["Evaluation data: the held-out test split, scored by the final model."],
        links=({"model card of this run's version (model_card.html)": "model_card.html"} if evaluation.accepted else {})
        | {"model card of the served model (tabpipe serve)": "model/card"},
        segments=_segment_rows(json.loads(Path(evaluation.blessing_path).read_text()).get("segments")))
    return {"png": str(png), "html": str(report)}


def _segment_rows(report: Mapping | None) -> list[dict]:
    """The gate's per-segment table (blessing.json ``segments``) as rows of the report."""
    def ci(entry):
        if not entry or entry.get("value") is None:
            return None
        return f"{entry['value']:.4f}" + (f" [{entry['ci'][0]:.4f}, {entry['ci'][1]:.4f}]" if entry.get("ci") else "")
    return [{"column": s["column"], "segment": s["segment"], "rows": s["rows"], "positives": s["positives"],
             f"new {report['metric']}": ci(s["new"]), "production": ci(s["production"]),
             "new - production": ci(s["difference"]), "status": "REFUSED" if s["refused"] else s["status"]}
            for s in (report or {}).get("segments") or []]
