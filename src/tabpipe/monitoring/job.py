"""The ``tabpipe monitor`` workflow as one plain call: the model and its profile from the registry, the
window (prediction log, a file, or a Parquet folder read a row group at a time), ``run_monitor``, and on a
``retrain`` decision, when asked, one training run (the gate decides).

Nothing here reads ``os.environ`` (registry keys, store and source URLs, the webhook URL come from the
``environ`` argument) or prints: warnings go to the ``warn`` callback, progress to the ``tabpipe`` logger.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from tabpipe.errors import TabpipeError
from tabpipe.jsonable import to_json_ready

log = logging.getLogger("tabpipe")
Warn = Callable[[str], None]


def run_monitoring(settings, *, environ: Mapping[str, str], now: datetime, since: datetime | None = None,
                   until: datetime | None = None, input: Path | None = None, labels: str | None = None,
                   model_version: str | None = None, retrain: bool = False, append_labelled: bool = False,
                   report: bool = False, warn: Warn = log.warning) -> dict:
    """Monitor one window for ``model_version`` (None: production); returns ``monitor.json``'s content.

    The window is the prediction log from ``since`` to ``until`` (default ``now``), or the rows of
    ``input`` (a CSV/Parquet file or a Parquet folder; ``labels``: its outcome column) — exactly one of
    ``since`` and ``input``. With ``retrain`` and a ``retrain`` decision, one training run follows
    (``append_labelled``: on the configured source plus the window's labelled rows), summarised under
    ``result["retrain"]``. A log window is read chunk by chunk (memory bounded); evidently's own HTML
    report is written for it only with ``report`` (its verdicts are computed either way); for ``input``
    it is always written.
    """
    from tabpipe.history.logread import read_window
    from tabpipe.history.open import open_history
    from tabpipe.monitoring.monitor import (
        MonitorSettings,
        run_monitor,
        window_from_dataset,
        window_from_file,
        log_window,
        window_from_log,
    )
    from tabpipe.registry import open_registry
    from tabpipe.training.run import new_run_dir

    msettings = MonitorSettings.from_settings(settings)
    registry = open_registry(settings.pipeline.registry, environ, sign=False, config_file=settings.config_path)
    model, meta = registry.load_model(model_version)
    version, files = meta["version"], meta.get("files", {})
    profile = None
    if "profile.json" in files:
        from tabpipe.drift.profile import read_profile

        profile = read_profile(registry.fetch(version, "profile.json"))
    else:
        log.warning("%s has no profile.json (published before monitoring): no PSI, no estimate", version)
    reference = None
    wants_reference = msettings.evidently or (msettings.multivariate.enabled and (profile or {}).get("multivariate"))
    if wants_reference and "reference.parquet" in files:
        import pandas as pd

        reference = pd.read_parquet(registry.fetch(version, "reference.parquet"))
    store = open_history(settings, environ)
    try:
        on, read_seconds, reading = {}, {}, time.perf_counter()
        if input is not None and streamed(input) and not append_labelled:   # read while it is monitored
            window, on = window_from_dataset(input, labels, now), partition_executor(settings)
        elif input is not None:   # in memory (--append-labelled trains on the window's rows anyway)
            window = window_from_file(read_whole(input), input.name, labels, now)
            read_seconds = {"read": round(time.perf_counter() - reading, 4)}
        elif append_labelled:   # --retrain --append-labelled trains on the window's rows: in memory
            until = until or now
            logged = read_window(store, model.schema, since=since, until=until, version=version)
            window = window_from_log(logged, since, until)
            read_seconds = {"read": round(time.perf_counter() - reading, 4)}
        else:                   # read chunk by chunk while it is monitored (timed in schema_check_and_score)
            window, on = log_window(store, version, since, until or now), {"evidently_html": report}
            advice = compaction_advice(store.log_files(since=since, until=until or now, version=version))
            if advice:
                warn(advice)
        out_dir = new_run_dir(settings.pipeline.run.artifacts_dir / "monitoring")
        result = run_monitor(window, model=model, version=version, profile=profile, reference=reference,
                             out_dir=out_dir, settings=msettings, store=store,
                             webhook_url=environ.get(msettings.alerts.webhook_url_env) or None, now=now,
                             stage_seconds=read_seconds, segments=meta.get("segments"), **on)
    finally:
        store.close()
    if retrain and result["decision"] == "retrain":
        result["retrain"] = to_json_ready(retrain_after(settings, window, model, out_dir, append_labelled=append_labelled,
                                                   monitor_run_id=result["run_id"], environ=environ, warn=warn))
        (out_dir / "monitor.json").write_text(json.dumps(result, indent=2, allow_nan=False))
    return result


SMALL_FILES = 1_000      # a window of more log files than this, averaging under ``SMALL_FILE_ROWS`` rows, is advised
SMALL_FILE_ROWS = 10_000  # to compact them


def compaction_advice(files: list[dict]) -> str | None:
    """A warning for a window whose rows are spread over many small log files (each costs a fixed time to read,
    whatever its rows), or None."""
    rows = sum(f["rows"] for f in files)
    if len(files) <= SMALL_FILES or rows >= SMALL_FILE_ROWS * len(files):
        return None
    return (f"the window's {rows} logged rows are in {len(files)} files ({rows // len(files)} rows a file on average): "
            "reading them costs more in per-file overheads than in rows; `tabpipe log compact` merges the closed "
            "hours' files (schedule it, e.g. hourly)")


def streamed(path: Path) -> bool:
    """Monitored a row group at a time: a folder (a partitioned Parquet dataset) or a .parquet file."""
    return path.is_dir() or (path.is_file() and path.suffix.lower() == ".parquet")


def read_whole(path: Path):
    """A CSV/Parquet file, or every file of a Parquet folder, as one table."""
    if not path.is_dir():
        from tabpipe.sources import read_file

        return read_file(path)
    import pandas as pd

    from tabpipe.scoring.partitions import iter_partitions

    return pd.concat(iter_partitions(path), ignore_index=True)


def partition_executor(settings) -> dict:
    """Where a partitioned dataset's files are processed (``training.executor``): keyword arguments for
    ``score_dataset`` / ``run_monitor`` — here, or one task per file on Dask."""
    training = settings.pipeline.training
    if training.executor.type != "dask":
        return {"dask": False}
    workers = training.executor.n_workers or (training.n_jobs if training.n_jobs > 0 else os.cpu_count() or 1)
    return {"dask": True, "dask_address": training.executor.address, "n_workers": workers}


def retrain_after(settings, window, model, out_dir: Path, *, append_labelled: bool, monitor_run_id: str,
                  environ: Mapping[str, str], warn: Warn = log.warning) -> dict:
    """Run the training pipeline (optionally on source + the window's labelled rows); the gate decides.
    The combined table is the training run's source: ``retrain_data.csv`` in the monitoring run folder, or,
    when the schema has sensitive columns (never in clear in a run folder), a temporary file removed after.
    The training run is recorded as started by the monitoring run ``monitor_run_id``."""
    from tabpipe.monitoring.monitor import labelled_rows

    with contextlib.ExitStack() as stack:
        if settings.schema_.sensitive:
            out_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tabpipe-retrain-")))
        extra = labelled_rows(window, settings.schema_.target.name, model.labels) if append_labelled else None
        used, info = retrain_data(settings, extra, out_dir, environ=environ)
        if settings.schema_.sensitive and "data_file" in info:
            info["data_file"] = None
            info["note"] = ("the schema has sensitive columns: the combined table was a temporary file outside the "
                            "run folder, removed after training; the run's data fingerprint identifies it")
        return train_once(used, info, monitor_run_id, environ=environ, warn=warn)


def retrain_data(settings, extra, out_dir: Path, *, environ: Mapping[str, str]) -> tuple:
    """(settings whose source is the configured source + ``extra`` rows, description); ``extra`` None: as is."""
    if extra is None:
        return settings, {"data": "the configured source"}
    if len(extra) == 0:
        return settings, {"data": "the configured source", "note": "the window has no labelled rows: nothing appended"}
    import pandas as pd

    from tabpipe.sources import FileSource, read_source

    base = read_source(settings.pipeline.source, settings.base_dir, environ=environ)
    combined = pd.concat([base, extra[[c for c in extra.columns if c in base.columns]]], ignore_index=True)
    path = out_dir / "retrain_data.csv"
    combined.to_csv(path, index=False)
    used = settings.model_copy(update={"pipeline": settings.pipeline.model_copy(
        update={"source": FileSource(type="file", path=path)})})
    return used, {"data": f"the configured source ({len(base)} rows) + {len(extra)} labelled rows of the window",
                  "data_file": str(path)}


def train_once(used, info: dict, monitor_run_id: str, *, environ: Mapping[str, str], warn: Warn = log.warning) -> dict:
    """One training run (the gate decides), recorded in the history store as started by the monitoring run
    ``monitor_run_id``; its summary for monitor.json."""
    from tabpipe.training.pipeline import TrainingPipeline

    pipeline = TrainingPipeline(used, environ=environ)
    try:
        run = pipeline.run()
    except Exception as exc:  # the run folder holds the traceback; the result says where
        record_training_run(used, pipeline.last_run, environ=environ, warn=warn, trigger_run_id=monitor_run_id)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                "run_folder": str(pipeline.last_run.dir) if pipeline.last_run else None, **info}
    record_training_run(used, run, environ=environ, warn=warn, trigger_run_id=monitor_run_id)
    rec = run.record
    return {"status": "succeeded", "run_folder": str(run.dir), "accepted": rec["accepted"], "decision": rec["decision"],
            "model_version": rec["model_version"], "metrics": rec["metrics"], **info}


def record_training_run(settings, run, *, environ: Mapping[str, str], warn: Warn = log.warning,
                        trigger_run_id: str | None = None) -> None:
    """Copy a finished or failed training run into the history store (``trigger_run_id``: the monitoring
    run that started it); a store problem only warns."""
    from tabpipe.history.lineage import describe_source, record_train_run
    from tabpipe.history.open import open_history

    if run is None:
        return
    try:
        with open_history(settings, environ) as store:
            record_train_run(store, run.record, run.dir, describe_source(settings.pipeline.source), trigger_run_id)
    except TabpipeError as exc:
        warn(f"run not recorded in the history store: {exc}")
