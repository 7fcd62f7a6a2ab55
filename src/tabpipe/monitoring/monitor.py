"""One monitoring run (``tabpipe monitor``): a window of rows checked against the model's frozen profile.

Data quality, probabilities, drift, performance (realised and estimated), the governance decision,
the dashboard and an alert, all from ``window_stats`` counts. ``run_monitor`` takes everything as
arguments; the CLI reads configuration and environment.
Design notes: docs/monitoring.md#one-monitoring-run
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from tabpipe.errors import DataError
from tabpipe.ranked import RankedScores
from tabpipe.training.metrics import holdout_metrics
from tabpipe.config import (
    AlertsSection,
    ConceptSection,
    ContributionsSection,
    MultivariateSection,
    RulesSection,
    Settings,
)
from tabpipe.monitoring.alerts import Alert, deliver
from tabpipe.reports.dashboard import figure, write_html, write_png
from tabpipe.monitoring.concept import concept_gap
from tabpipe.monitoring.estimate import estimate
from tabpipe.monitoring.governance import Observations, decide
from tabpipe.history.logread import LogRows
from tabpipe.drift.psi import counts_psi, feature_psi
from tabpipe.history.store import SCORE_FEATURE
from tabpipe.jsonable import to_json_ready
from tabpipe.monitoring.window_stats import ChunkSpec, Spill, WindowStats, dataset_stats, frame_stats, stream_stats
from tabpipe.schema import positive_mask

log = logging.getLogger(__name__)
DELIVERY_STATUS = {"sent": "delivered", "failed": "failed", "suppressed": "suppressed", "not_configured": "logged"}
RESULT_FILE = "monitor.json"
REPORT_FILE = "report.html"
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True, kw_only=True)
class MonitorSettings:
    """What a monitoring run is configured with: values of the validated ``pipeline.yaml``, none of its own."""

    rules: RulesSection               # monitoring.rules
    alerts: AlertsSection             # monitoring.alerts
    psi_min_rows: int                 # monitoring.psi_min_rows
    evidently: bool                   # monitoring.evidently and validation.drift.enabled
    evidently_max_rows: int           # validation.drift.max_rows
    evidently_drift_share: float      # validation.drift.drift_share
    seed: int                         # run.seed
    exact_rows: int = 2_000_000       # monitoring.exact_rows
    multivariate: MultivariateSection = MultivariateSection()   # monitoring.multivariate
    concept: ConceptSection = ConceptSection()                  # monitoring.concept
    contributions: ContributionsSection = ContributionsSection()   # monitoring.contributions

    @classmethod
    def from_settings(cls, settings: Settings) -> MonitorSettings:
        """From validated ``tabpipe.config.Settings``."""
        p = settings.pipeline
        m = p.monitoring
        return cls(rules=m.rules, alerts=m.alerts, psi_min_rows=m.psi_min_rows,
                   evidently=m.evidently and p.validation.drift.enabled, evidently_max_rows=p.validation.drift.max_rows,
                   evidently_drift_share=p.validation.drift.drift_share, seed=p.run.seed, exact_rows=m.exact_rows,
                   multivariate=m.multivariate, concept=m.concept, contributions=m.contributions)


@dataclass(frozen=True)
class Window:
    """The rows of one monitoring run. ``proba``: logged probabilities (None: score them now);
    ``outcomes``: label values as given, NaN where unknown (None: no outcomes at all)."""

    rows: pd.DataFrame
    description: str
    start: datetime
    end: datetime
    proba: np.ndarray | None = None
    outcomes: pd.Series | None = None


@dataclass(frozen=True)
class DatasetWindow:
    """The rows of Parquet files read a row group at a time (bounded memory): a partitioned folder or one
    file (``tabpipe.scoring.partitions``); ``labels``: the column holding outcomes (None: no outcomes)."""

    path: Path
    description: str
    start: datetime
    end: datetime
    labels: str | None = None


@dataclass(frozen=True)
class LogWindow:
    """The prediction log's rows of model ``version`` logged in ``[start, end)``, read from ``store`` chunk by
    chunk (``history.logread.log_chunks``): memory stays bounded however many rows the window holds."""

    store: object                     # HistoryStore
    version: str | None
    description: str
    start: datetime
    end: datetime


def log_window(store, version: str | None, since: datetime, until: datetime) -> LogWindow:
    """The log window of ``version`` from ``since`` to ``until``, read when monitored."""
    return LogWindow(store, version, f"log {since:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M} UTC", since, until)


def parse_since(text: str, now: datetime) -> datetime:
    """``7d`` / ``12h`` / ``30m`` / ``2w`` before ``now``, or an ISO date/time (UTC if no zone)."""
    match = _SINCE.match(text)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        when = pd.Timestamp(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: expected a duration such as 7d, 12h, 30m, 2w or an ISO date") from None
    return (when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")).to_pydatetime()


def window_from_file(frame: pd.DataFrame, name: str, labels: str | None, now: datetime) -> Window:
    """A file's rows; ``labels``: the column holding outcomes (DataError if it is missing)."""
    outcomes = None
    if labels is not None:
        if labels not in frame.columns:
            raise DataError(f"{name}: no column {labels!r} for --labels; columns: {', '.join(map(str, frame.columns))}")
        outcomes = frame[labels]
    return Window(frame, f"file {name}", now, now, None, outcomes)


def window_from_dataset(path: Path, labels: str | None, now: datetime) -> DatasetWindow:
    """A Parquet folder's (or file's) rows; DataError naming the first file without the ``labels`` column
    (only the files' footers are read here)."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from tabpipe.scoring.partitions import partitions

    parts = partitions(path)
    if labels is not None:
        for part in parts:
            names = list(pq.read_schema(part.path).names) + list(ds.get_partition_keys(part.expression))
            if labels not in names:
                raise DataError(f"{part.path}: no column {labels!r} for --labels; columns: {', '.join(names)}")
    return DatasetWindow(Path(path), f"{'dataset' if Path(path).is_dir() else 'file'} {Path(path).name}", now, now,
                         labels)


def window_from_log(log: LogRows, since: datetime, until: datetime) -> Window:
    """Rows of the prediction log (``logread.read_window``): inputs, logged probability, outcome."""
    n = len(log.proba)
    outcomes = log.outcomes.reset_index(drop=True) if n else None
    if outcomes is not None and outcomes.isna().all():
        outcomes = None
    description = f"log {since:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M} UTC"
    return Window(log.rows, description, since, until, log.proba if n else None, outcomes)


class Stopwatch:
    """Seconds per stage of one run: ``lap("psi")`` charges the time since the previous lap to ``psi``.
    Starts from the stages the caller timed (e.g. ``{"read": 1.2}``)."""

    def __init__(self, initial: Mapping[str, float] | None = None):
        self.seconds: dict[str, float] = dict(initial or {})
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Charge the seconds since the previous lap to ``stage`` (adding to what it already has)."""
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._last, 4)
        self._last = now

    def move(self, seconds: float, source: str, target: str) -> None:
        """Charge ``seconds`` of ``source``'s time to ``target`` instead (a stage timed inside another)."""
        self.seconds[source] = round(max(self.seconds.get(source, 0.0) - seconds, 0.0), 4)
        self.seconds[target] = round(self.seconds.get(target, 0.0) + seconds, 4)


def timed(chunks, spent: dict) -> Iterator:
    """``chunks``, adding the seconds spent waiting for each to ``spent["read"]``."""
    source = iter(chunks)
    while True:
        started = time.perf_counter()
        try:
            chunk = next(source)
        except StopIteration:
            spent["read"] += time.perf_counter() - started
            return
        spent["read"] += time.perf_counter() - started
        yield chunk


def _realised(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict | None:
    if len(y) == 0 or y.min() == y.max():
        return None
    ranked = RankedScores.of(y, proba)
    return {**holdout_metrics(y, proba, threshold, ranked), "confusion": ranked.confusion(threshold)}


def _psi_verdict(value: float | None, rules: RulesSection) -> str:
    if value is None:
        return "insufficient_data"
    return "drift" if value >= rules.retrain_psi_at_least else "watch" if value >= rules.watch_psi_at_least else "ok"


def _evidently(reference: pd.DataFrame | None, stats: WindowStats, out_dir: Path, s: MonitorSettings,
               sensitive: frozenset[str], *, html: bool = True) -> dict:
    """evidently's verdicts (computed natively, ``drift.rules``) and, with ``html``, its own report on the
    window's typed rows: every row, or the bounded sample of a window read a partition or chunk at a time
    (``stats.sample``; the summary and the report say so)."""
    if not s.evidently:
        return {"status": "disabled", "message": "monitoring.evidently or validation.drift.enabled is false"}
    if reference is None:
        return {"status": "no_reference", "message": "the model version has no reference.parquet"}
    if stats.rows == 0:
        return {"status": "no_rows", "message": "no rows in the window"}
    from tabpipe.drift.rules import drift_report

    sample, total = stats.smallest(s.evidently_max_rows), stats.rows
    try:
        summary = drift_report(reference, sample, out_dir, drift_share=s.evidently_drift_share,
                               max_rows=s.evidently_max_rows, seed=s.seed, sensitive=sensitive, window_rows=total,
                               html=html)
    except Exception as exc:  # noqa: BLE001 — evidently failing must not lose the rest of the run; it is reported
        log.exception("evidently drift report failed")
        return {"status": "failed", "message": f"{type(exc).__name__}: {exc}"}
    rows = summary.get("report_current_rows", len(sample))
    verdicts = ("every row" if len(sample) == total else
                f"a seeded random sample of {len(sample)} of the window's {total} rows (the window was read a "
                "partition or chunk at a time; the sample keeps memory bounded)")
    summary["sample_note"] = (f"evidently's report ran on a random sample of {rows} of the window's {total} "
                              f"rows (validation.drift.max_rows={s.evidently_max_rows}, seed {s.seed}); the per-column "
                              f"drift verdicts use {verdicts}"
                              if rows < total else f"evidently ran on all {total} rows")
    return summary


def run_monitor(window: Window | DatasetWindow | LogWindow, *, model, version: str, profile: dict | None,
                reference: pd.DataFrame | None, out_dir: Path, settings: MonitorSettings, store=None,
                webhook_url: str | None = None, run_id: str | None = None, now: datetime | None = None,
                stage_seconds: Mapping[str, float] | None = None, evidently_html: bool = True,
                dask: bool = False, dask_address: str | None = None, n_workers: int = 1,
                segments: Mapping[str, Mapping] | None = None) -> dict:
    """Monitor ``window`` for ``model`` (registry ``version``); returns the result (also ``monitor.json``).

    ``store``: a ``HistoryStore`` (None: nothing recorded, no trend, no de-duplication). A
    ``DatasetWindow`` is read a row group at a time; with ``dask``, one task per file on the cluster at
    ``dask_address`` (None: a LocalCluster of ``n_workers`` processes), the counts merged here.
    ``stage_seconds``: stages the caller timed (e.g. reading the window); the run adds its own
    (``result["stage_seconds"]``, also in the store's ``runs`` row). ``evidently_html``: also write
    evidently's own HTML/JSON report (the drift verdicts are computed either way, natively). ``segments``: the
    segment columns published with the version (its metadata's ``segments``): realised metrics per segment for
    a window in memory with outcomes.
    """
    clock = Stopwatch(stage_seconds)
    now = now or datetime.now(timezone.utc)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = run_id or out_dir.name
    if store is not None:
        store.record_run(kind="monitor", run_id=run_id, model_version=version,
                         rows=len(window.rows) if isinstance(window, Window) else None, source=window.description,
                         config_ref=str(out_dir / RESULT_FILE), started_at=now)
    try:
        spent = {"read": 0.0}
        stats = window_stats(window, model=model, profile=profile, evidently=settings.evidently and reference is not None,
                             multivariate=_multivariate_ready(settings, profile, reference), settings=settings,
                             dask=dask, dask_address=dask_address, n_workers=n_workers, spent=spent)
        clock.lap("schema_check_and_score")
        if isinstance(window, LogWindow):     # the wait for the log's chunks, read while the rows are checked
            clock.move(spent["read"], "schema_check_and_score", "read")
        result = _monitor(window, stats, model=model, version=version, profile=profile, reference=reference,
                          out_dir=out_dir, s=settings, store=store, webhook_url=webhook_url, run_id=run_id, now=now,
                          clock=clock, segments=segments, evidently_html=evidently_html)
    except BaseException as exc:
        if store is not None:
            store.finish_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}", stage_seconds=clock.seconds)
        raise
    if store is not None:
        store.finish_run(run_id, status="succeeded", rows=stats.rows, stage_seconds=clock.seconds)
    return result


def window_stats(window: Window | DatasetWindow | LogWindow, *, model, profile: dict | None, evidently: bool,
                 settings: MonitorSettings, multivariate: bool = False, dask: bool = False,
                 dask_address: str | None = None, n_workers: int = 1, spent: dict | None = None) -> WindowStats:
    """The window's counts, probabilities, outcomes and (for evidently and the domain classifier) rows: a
    window in memory as one chunk, with every row kept for evidently (else ``multivariate.sample_rows``
    for the domain classifier); a dataset file by file and a log window chunk by chunk, with a sample of the
    larger of the two. ``spent["read"]``: seconds spent waiting for the log's chunks are added to it."""
    features = profile["features"] if profile else None
    domain_rows = settings.multivariate.sample_rows if multivariate else 0
    spill = Spill(exact_rows=settings.exact_rows, threshold=float(model.threshold),
                  calibration=(profile or {}).get("calibration"), score_reference=(profile or {}).get("scores"))
    if isinstance(window, Window):
        spec = ChunkSpec(model=model, profile_features=features, keep=None if evidently else domain_rows,
                         seed=settings.seed)
        return frame_stats(window.rows, spec, proba=window.proba, outcomes=window.outcomes, where=window.description)
    if isinstance(window, LogWindow):
        from tabpipe.history.logread import log_chunks

        from tabpipe.monitoring.log_stats import counted_in_processes, plan

        spec = ChunkSpec(model=model, profile_features=features, seed=settings.seed, categorical=True,
                         keep=max(settings.evidently_max_rows if evidently else 0, domain_rows), spill=spill)
        spent = spent if spent is not None else {"read": 0.0}
        bounds = dict(since=window.start, until=window.end, version=window.version)
        groups = plan(window.store, **bounds)
        if groups is not None:      # a large columnar window: counted by several processes at once
            try:
                return counted_in_processes(window.store, groups, spec, where=window.description,
                                            read=lambda chunks: timed(chunks, spent), **bounds)
            except BrokenProcessPool as exc:     # a process could not start or was killed (e.g. out of memory)
                log.warning("counting the window in %d processes failed (%s): counting it in one pass",
                            len(groups), exc)
        chunks = log_chunks(window.store, model.schema, **bounds)
        return stream_stats(timed(chunks, spent), spec, where=window.description)
    from tabpipe.scoring.partitions import check_columns, partitions

    parts = partitions(window.path)
    check_columns(parts, model)
    spec = ChunkSpec(model=model, profile_features=features, labels=window.labels,
                     keep=max(settings.evidently_max_rows if evidently else 0, domain_rows), seed=settings.seed,
                     spill=spill)
    return dataset_stats(parts, spec, dask=dask, dask_address=dask_address, n_workers=n_workers)


def _monitor(window: Window | DatasetWindow, stats: WindowStats, *, model, version: str, profile: dict | None,
             reference: pd.DataFrame | None, out_dir: Path, s: MonitorSettings, store, webhook_url: str | None,
             run_id: str, now: datetime, clock: Stopwatch, segments: Mapping[str, Mapping] | None = None,
             evidently_html: bool = True) -> dict:
    n, schema, threshold = stats.rows, model.schema, float(model.threshold)
    quality = stats.quality(schema)
    calibration, sketch = (profile or {}).get("calibration"), stats.sketch
    if sketch is None:        # every row's score kept: exact metrics
        proba = stats.proba
        scored = ~np.isnan(proba)
        y, labelled = stats.y, stats.labelled if stats.labelled is not None else np.zeros(n, dtype=bool)
        realised = _realised(y[labelled], proba[labelled], threshold) if y is not None else None
        by_segment = _by_segment(window, segments, y, proba, labelled, threshold, realised is not None, schema)
        estimated = estimate(proba[scored], threshold, calibration) if calibration else None
        scored_rows, labelled_rows = int(scored.sum()), int(labelled.sum())
    else:                     # beyond monitoring.exact_rows: from the scores' bins (score_sketch)
        realised, estimated = sketch.realised(), sketch.estimated()
        by_segment = (_by_segment(window, segments, None, None, None, threshold, False) if not segments else
                      {"status": "not_computed",
                       "message": f"the window has over monitoring.exact_rows ({s.exact_rows}) rows: "
                                  "per-segment metrics are computed row by row, for smaller windows"})
        scored_rows, labelled_rows = sketch.scored_rows, sketch.labelled_rows
    clock.lap("performance")
    psi = ({name: counts_psi(name, profile["features"][name], counts, min_rows=s.psi_min_rows)
            for name, counts in stats.buckets.items()} if profile else {})
    score_psi = None
    if profile and sketch is None:
        score_psi = feature_psi("probability", profile["scores"], proba[scored], min_rows=s.psi_min_rows)
    elif profile:
        score_psi = counts_psi("probability", profile["scores"], sketch.score_buckets, min_rows=s.psi_min_rows)
    clock.lap("psi")
    drift = _evidently(reference, stats, out_dir, s, schema.sensitive, html=evidently_html)
    clock.lap("evidently")
    multivariate = _domain_auc(profile, reference, stats, s)
    clock.lap("multivariate")
    if sketch is None:
        concept = _concept(labelled_rows, calibration, s,
                           lambda **kw: concept_gap(y[labelled], proba[labelled], calibration, **kw))
    else:
        concept = _concept(labelled_rows, calibration, s, sketch.concept)
    clock.lap("concept")
    contributions = _contribution_drift(model, reference, stats, s)
    clock.lap("contributions")
    evidently_sample = stats.smallest(s.evidently_max_rows)
    sampled = evidently_sample is not None and len(evidently_sample) < n

    obs = Observations(window=window.description, rows=n,
                       roc_auc=realised["roc_auc"] if realised else None,
                       estimated_roc_auc=estimated["roc_auc"] if estimated else None,
                       psi={name: r.value for name, r in psi.items()},
                       drift_share=drift.get("drift_share"),
                       drift_share_source=(f"evidently tests on a sample of {len(evidently_sample)} of {n} rows"
                                           if sampled else "evidently"),
                       domain_auc=multivariate.get("auc"), domain_auc_threshold=multivariate.get("threshold"),
                       domain_auc_note=multivariate.get("message") or multivariate["status"],
                       concept_gap=concept.get("gap"),
                       concept_gap_ci=tuple(concept["ci"]) if concept.get("ci") else None,
                       concept_gap_note=concept.get("message") or concept["status"])
    decision = decide(obs, s.rules)
    clock.lap("governance")

    if store is not None:
        window_kw = dict(window_start=window.start, window_end=window.end, run_id=run_id)
        if realised:
            store.record_window_metrics(version, _metric_values(realised), estimated=False,
                                        rows=labelled_rows, **window_kw)
        if estimated:
            store.record_window_metrics(version, _metric_values(estimated), estimated=True,
                                        rows=scored_rows, **window_kw)
        drift_rows = [{"feature": name, "psi": r.value, "method": "psi", "verdict": _psi_verdict(r.value, s.rules)}
                      for name, r in psi.items()]
        if score_psi is not None:
            drift_rows.append({"feature": SCORE_FEATURE, "psi": score_psi.value, "method": "psi",
                               "verdict": _psi_verdict(score_psi.value, s.rules)})
        store.record_drift(version, drift_rows, rows=n, **window_kw)
        store.record_quality(run_id, {c: {k: v for k, v in q.items() if v is not None}
                                      for c, q in quality["columns"].items()}, score=quality["score"])

    trend = _trend(store, version)
    clock.lap("store")
    # ROC / PR / confusion / by-class panels: the rows with outcomes; without any, every scored row
    if sketch is not None:
        panel_proba = panel_y = None
    else:
        panel_proba, panel_y = (proba[labelled], y[labelled]) if realised else (proba[scored], None)
    png = write_png(figure(proba=panel_proba, y=panel_y, binned=sketch, threshold=threshold, trend=trend, psi={k: r.value for k, r in psi.items()},
                           psi_lines=(s.rules.watch_psi_at_least, s.rules.retrain_psi_at_least),
                           auc_line=s.rules.retrain_roc_auc_below,
                           multivariate=multivariate, concept=concept,
                           title=f"monitoring {version}: {window.description} ({n} rows)"),
                    out_dir / "dashboard.png")
    clock.lap("dashboard")
    reports = {"png": str(png), "html": str(out_dir / REPORT_FILE), "result": str(out_dir / RESULT_FILE),
               "evidently_html": drift.get("html"), "evidently_json": drift.get("json")}

    alert = None
    if decision.decision != "ok":
        alert = _alert(decision, version, window, n, run_id, reports["html"], s.alerts, store, webhook_url, now)
    clock.lap("alert")

    result = {
        "run_id": run_id, "model_version": version, "decision": decision.decision,
        "reasons": [r.as_dict() for r in decision.reasons], "not_checked": list(decision.not_checked),
        "window": {"description": window.description, "start": window.start.isoformat(),
                   "end": window.end.isoformat(), "rows": n, "scored_rows": scored_rows,
                   "labelled_rows": labelled_rows},
        "metrics": {"realised": realised, "estimated": estimated,
                    "note": None if realised else "no outcomes with both classes in this window: only the estimate"},
        "segments": by_segment,
        "psi": {name: r.as_dict() for name, r in psi.items()},
        "psi_skipped": dict((profile or {}).get("skipped", {})),   # features the profile leaves out, with why
        "score_psi": score_psi.as_dict() if score_psi else None,
        "drift": {k: v for k, v in drift.items() if k != "columns"},
        "multivariate": multivariate,
        "contributions": contributions,
        "concept": concept,
        "quality": quality,
        "alert": alert,
        "reports": reports,
        "store": getattr(store, "url", None),
        "profile": "profile.json" if profile else "none: the version has no profile.json (published before monitoring existed)",
    }
    result = to_json_ready(result)
    _write_report(out_dir, result, png, model, version)
    clock.lap("report")
    result["stage_seconds"] = dict(clock.seconds)
    (out_dir / RESULT_FILE).write_text(json.dumps(result, indent=2, allow_nan=False))
    return result


def _log_columns(window: LogWindow, schema, columns: list[str]) -> pd.DataFrame | None:
    """The ``columns`` of every row of a log window, in the order ``window_stats`` read them (a second pass
    over the log: only when per-segment metrics are asked for and outcomes arrived)."""
    from tabpipe.history.logread import log_chunks, text_columns

    parts = [text_columns(chunk.rows[columns]) for chunk in log_chunks(window.store, schema, since=window.start, until=window.end,
                                                         version=window.version)]
    return pd.concat(parts, ignore_index=True) if parts else None


def _by_segment(window: Window | DatasetWindow | LogWindow, segments: Mapping | None, y: np.ndarray | None,
                proba: np.ndarray, labelled: np.ndarray, threshold: float, realised: bool, schema=None) -> dict:
    """Realised metrics per segment of the labelled rows (``segments.segment_metrics``), or why there are none."""
    if not segments:
        return {"status": "not_configured", "message": "the version was published without segments (pipeline.yaml segments)"}
    if not realised:
        return {"status": "no_outcomes", "message": "no outcomes with both classes in this window"}
    if isinstance(window, LogWindow):
        rows = _log_columns(window, schema, list(segments))
        if rows is None or len(rows) != len(labelled):
            return {"status": "not_computed", "message": "the log changed while it was read; run the monitor again"}
    elif isinstance(window, Window):
        rows = window.rows.reset_index(drop=True)
    else:
        return {"status": "not_computed", "message": "per-segment metrics are computed for the prediction log and "
                                                     "files read in memory (CSV), not for Parquet datasets"}
    from tabpipe.training.segments import segment_metrics

    rows = rows[labelled]
    return {"status": "ok", "rows": segment_metrics(rows, segments, y[labelled], proba[labelled], threshold)}


def _multivariate_ready(s: MonitorSettings, profile: dict | None, reference: pd.DataFrame | None) -> bool:
    """Whether the domain classifier can run: enabled, a calibrated profile and reference rows."""
    return (s.multivariate.enabled and reference is not None
            and ((profile or {}).get("multivariate") or {}).get("status") == "ok")


def _domain_auc(profile: dict | None, reference: pd.DataFrame | None, stats: WindowStats, s: MonitorSettings) -> dict:
    """The multivariate drift signal (``tabpipe.drift.multivariate``), or a status saying why there is none."""
    if not s.multivariate.enabled:
        return {"status": "disabled", "message": "monitoring.multivariate.enabled is false"}
    if profile is None:
        return {"status": "no_profile", "message": "the model version has no profile.json"}
    if reference is None:
        return {"status": "no_reference", "message": "the model version has no reference.parquet"}
    from tabpipe.drift.multivariate import domain_auc

    m = s.multivariate
    window = stats.sample if stats.sample is not None else pd.DataFrame()   # domain_auc draws its own seeded sample
    result = domain_auc(reference, window, profile["features"], profile.get("multivariate"),
                        sample_rows=m.sample_rows, min_rows=m.min_rows, seed=s.seed,
                        false_alarm_rate=m.false_alarm_rate, margin=m.margin)
    out = result.as_dict()
    if result.status == "insufficient_data" or (result.status == "ok" and stats.rows > len(window)):
        out["message"] = " ".join(x for x in (out["message"], f"(the window has {stats.rows} rows; the classifier "
                                              f"saw a random sample of {result.window_rows})") if x)
    return out


def _contribution_drift(model, reference: pd.DataFrame | None, stats: WindowStats, s: MonitorSettings) -> dict:
    """Drift of mean |contribution| per column (``contributions.contribution_drift``), or why there is none."""
    c = s.contributions
    if not c.enabled:
        return {"status": "disabled", "message": "monitoring.contributions.enabled is false"}
    if reference is None:
        return {"status": "no_reference", "message": "the model version has no reference.parquet"}
    if stats.sample is None or len(stats.sample) == 0:
        return {"status": "no_sample", "message": "no window rows were kept (evidently and the multivariate "
                                                  "signal are off, or the window is empty)"}
    from tabpipe.monitoring.contributions import contribution_drift

    return contribution_drift(model, reference, stats.sample, sample_rows=c.sample_rows, min_rows=c.min_rows,
                              seed=s.seed)


def _concept(labelled_rows: int, calibration: dict | None, s: MonitorSettings, gap: Callable[..., dict]) -> dict:
    """The concept drift signal on the labelled rows (``gap``: ``concept.concept_gap`` of them, or the sketch's),
    or a status saying why there is none."""
    c = s.concept
    if not c.enabled:
        return {"status": "disabled", "message": "monitoring.concept.enabled is false"}
    if labelled_rows == 0:
        return {"status": "no_outcomes", "message": "no outcomes in this window"}
    if not calibration:
        return {"status": "no_estimate", "message": "the profile has no calibration map: no label-free estimate"}
    if labelled_rows < c.min_rows:
        return {"status": "insufficient_data", "rows": labelled_rows,
                "message": f"{labelled_rows} labelled rows; the gap needs at least {c.min_rows} (monitoring.concept.min_rows)"}
    return gap(resamplings=c.resamplings, confidence=c.confidence, seed=s.seed)


def _metric_values(metrics: Mapping) -> dict[str, float]:
    return {k: float(metrics[k]) for k in ("roc_auc", "pr_auc", "precision", "recall", "f1")
            if k in metrics and metrics[k] is not None}


def _trend(store, version: str) -> list[dict]:
    if store is None:
        return []
    trend = store.metric_trend(version, "roc_auc")
    return [{"window": (row.window_start.strftime("%m-%d %H:%M") if pd.notna(row.window_start) else "test split"),
             "realised": None if pd.isna(row.realised) else float(row.realised),
             "estimated": None if pd.isna(row.estimated) else float(row.estimated)}
            for row in trend.itertuples()]


def _alert(decision, version: str, window: Window, n: int, run_id: str, report: str, settings: AlertsSection,
           store, webhook_url: str | None, now: datetime) -> dict:
    alert = Alert(model_version=version, decision=decision.decision, window=window.description, rows=n,
                  reasons=tuple(r.as_dict() for r in decision.reasons), run_id=run_id, report=report)
    rule = alert.key.split("|", 1)[1]           # decision|rules; the version has its own column
    log.warning("%s", alert.summary)
    last_sent = None
    if store is not None:
        last = store.last_alert(rule, version, status="delivered")
        last_sent = (last.get("delivered_at") or last.get("created_at")) if last else None
    delivery = deliver(alert, webhook_url, settings, last_sent=last_sent, now=now)
    if delivery.status == "failed":
        log.warning("alert delivery failed after %d attempt(s): %s", delivery.attempts, delivery.error)
    first = decision.reasons[0]
    if store is not None:
        store.record_alert(rule=rule, version=version, observed=first.observed, threshold=first.threshold,
                           status=DELIVERY_STATUS[delivery.status], attempts=delivery.attempts,
                           message=alert.summary + (f" — delivery: {delivery.error}" if delivery.error else ""),
                           window_start=window.start, window_end=window.end, rows=n, run_id=run_id, created_at=now)
    return {"key": alert.key, "summary": alert.summary, "delivery": delivery.as_dict()}


def _write_report(out_dir: Path, result: dict, png: Path, model, version: str) -> None:
    m = result["metrics"]
    metrics = {}
    for kind in ("realised", "estimated"):
        for name, value in (m[kind] or {}).items():
            if name in ("roc_auc", "pr_auc", "precision", "recall", "f1"):
                metrics[f"{name} ({kind})"] = value
    if m["realised"]:
        metrics["confusion (realised)"] = m["realised"]["confusion"]
    binned = (m["realised"] or m["estimated"] or {}).get("binned")
    if binned:
        bound = (m["realised"] or {}).get("binned", {}).get("roc_auc_max_error")
        metrics["computed from score bins"] = (
            f"the window is over monitoring.exact_rows: {', '.join(binned['binned'])} from {binned['bins']} score bins"
            + (f" (realised ROC-AUC within {bound:.1e} of the row-by-row value)" if bound is not None else "")
            + f"; {', '.join(binned['exact'])} exact")
    if m["estimated"]:
        metrics["estimate assumptions"] = "; ".join(m["estimated"]["assumptions"])
    drift = {f"PSI {name}": (r["psi"] if r["psi"] is not None else f"insufficient data: {r['message']}")
             for name, r in sorted(result["psi"].items(), key=lambda kv: -(kv[1]["psi"] or 0))}
    if result["score_psi"]:
        drift["PSI of the score"] = result["score_psi"]["psi"]
    mv, concept = result["multivariate"], result["concept"]
    drift["multivariate: domain classifier ROC-AUC"] = (
        f"{mv['auc']:.4f} (no-shift threshold {mv['threshold']:.4f}; {mv['reference_rows']} reference vs "
        f"{mv['window_rows']} window rows)" if mv.get("auc") is not None else f"not measured: {mv.get('message') or mv['status']}")
    drift["concept drift: realised - estimated ROC-AUC"] = (
        f"{concept['gap']:+.4f} ({concept['confidence']:.0%} interval {concept['ci'][0]:+.4f} .. {concept['ci'][1]:+.4f}; "
        f"realised {concept['realised']:.4f}, estimated {concept['estimated']:.4f}, {concept['rows']} labelled rows)"
        if concept.get("gap") is not None else f"not measured: {concept.get('message') or concept['status']}")
    contributions = result["contributions"]
    if contributions.get("status") == "ok":
        for c in contributions["columns"][:5]:   # the five largest changes
            drift[f"mean |contribution| {c['column']} (window / reference)"] = (
                f"{c['window']:.4f} / {c['reference']:.4f}" + (f" = {c['ratio']:.2f}x" if c["ratio"] is not None else ""))
    else:
        drift["mean |contribution| per column"] = f"not measured: {contributions.get('message') or contributions['status']}"
    drift["evidently"] = result["drift"].get("sample_note") or result["drift"].get("message")
    drift["evidently drift share"] = result["drift"].get("drift_share")
    q = result["quality"]
    quality = {"rows": q["rows"], "rows with problems": q["rows_with_problems"], "quality score": q["score"]}
    for rule in q["rules"]:
        quality[f"{rule['column']}: {rule['message']}"] = f"{rule['rows']} rows ({rule['rate']:.2%})"
    card = {"version": version, "candidate": getattr(model, "candidate", ""), "threshold": model.threshold,
            "labels": list(model.labels), "features": ", ".join(model.features), "window": result["window"]["description"],
            "alert": (result["alert"] or {}).get("delivery", {}).get("status", "none")}
    write_html(out_dir / REPORT_FILE, title=f"tabpipe monitoring — {version} — {result['window']['description']}",
               png=png, metrics=metrics, model_card=card, drift=drift, quality=quality,
               decision={"decision": result["decision"], "reasons": result["reasons"],
                         "not_checked": result["not_checked"]},
               evidently_html=result["reports"]["evidently_html"],
               links={"model card of the served model": "model/card"},
               segments=(result["segments"].get("rows") or []))


def labelled_rows(window: Window, target: str, labels: tuple) -> pd.DataFrame:
    """The window's rows that have an outcome, with the target column in the model's label values
    (``labels`` = (negative, positive)) — what ``--retrain --append-labelled`` adds to the training data."""
    if window.outcomes is None:
        return window.rows.iloc[0:0]
    outcomes = window.outcomes.reset_index(drop=True)
    known = outcomes.notna().to_numpy()
    rows = window.rows.reset_index(drop=True)[known].copy()
    return rows.assign(**{target: np.where(positive_mask(outcomes[known], labels[1]), labels[1], labels[0])})


def latest_dashboard(settings, environ: Mapping[str, str]) -> Path | None:
    """``latest_report`` for validated settings; the store is only read (never created or migrated
    here), and a store that cannot be read leaves the training reports (logged)."""
    from tabpipe.history.open import history_url
    from tabpipe.history.store import HistoryStore, StoreError

    store = None
    try:
        store = HistoryStore.open(history_url(settings, environ), migrate_to=None)
        return latest_report(store, settings.pipeline.run.artifacts_dir)
    except StoreError as exc:
        log.warning("dashboard: history store not readable (%s); showing the newest training report", exc)
        return latest_report(None, settings.pipeline.run.artifacts_dir)
    finally:
        if store is not None:
            store.close()


def latest_report(store, artifacts_dir: Path) -> Path | None:
    """The newest dashboard: the last succeeded monitoring run's report (from the store), else the
    newest training run's (``artifacts/*/06_pusher/report.html``); None if there is neither."""
    if store is not None:
        runs = store.runs(kind="monitor", limit=20)
        for row in runs.itertuples():
            if row.status == "succeeded" and row.config_ref:
                page = Path(row.config_ref).with_name(REPORT_FILE)
                if page.is_file():
                    return page
    training = sorted(Path(artifacts_dir).glob("*/*_pusher/report.html"))
    return training[-1] if training else None
