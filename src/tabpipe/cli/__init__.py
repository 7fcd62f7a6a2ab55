"""The ``tabpipe`` command line.

Exit codes: 0 done; 1 a stage or the data failed (message printed, details in the run folder);
2 usage or configuration error (one line naming the file and key); ``monitor`` also: 3 the
decision is ``retrain`` (and ``--retrain`` was not given).
"""
from __future__ import annotations

import functools
import logging
import signal
import sys
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tabpipe.errors import ConfigError, TabpipeError

app = typer.Typer(help="Train, gate, version and serve tabular classifiers from YAML.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Sample data and data loading helpers.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry: list versions, promote (or roll back), verify and sign.",
                         no_args_is_help=True)
keys_app = typer.Typer(help="The Ed25519 keypair that signs registry versions.", no_args_is_help=True)
runs_app = typer.Typer(help="The history store's runs: train, predict, monitor, outcomes.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(runs_app, name="runs")
# no hard wrapping at 80 columns when piped (CI logs, files): one message stays one line
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
DEFAULT_CONFIG = Path("config/pipeline.yaml")
ConfigOpt = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="pipeline.yaml to use.")
DEFAULT_KEYS_DIR = Path(".tabpipe/keys")


def cli_errors(fn):
    """Turn expected errors into one readable line and the documented exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            err.print(f"[red]config error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(2) from None
        except TabpipeError as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
    return wrapper


def _log_to_console(level: int = logging.INFO) -> None:
    logger = logging.getLogger("tabpipe")
    logger.setLevel(level)
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.addHandler(RichHandler(console=err, show_path=False, markup=False))


def _registry(config: Path, *, sign: bool = False):
    """The registry of ``config``, keys and cache folder from this process's environment.

    ``sign``: also load the private key (publishing, promoting); readers get the public key only.
    """
    import os

    from tabpipe.config import load_settings
    from tabpipe.registry import open_registry

    settings = load_settings(config, check_candidates=False)
    return open_registry(settings.pipeline.registry, os.environ, sign=sign, config_file=settings.config_path)


class SearchBar:
    """The model search on a terminal: evaluations done of planned, configurations left, best CV score,
    budget used. (Not on a terminal, the trainer's log lines say the same.)"""

    def __init__(self, console: Console):
        self.console = console
        self.progress: Progress | None = None

    def begin(self, configs: int, evaluations: int, budget_s: float) -> None:
        self.progress = Progress(TextColumn("{task.description:>6}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), console=self.console)
        self.search = self.progress.add_task("search", total=evaluations,
                                             info=f"0/{evaluations} evaluations · {configs} configurations left")
        self.budget = self.progress.add_task("budget", total=budget_s, info=f"0 of {budget_s:.0f}s")
        self.progress.start()

    def update(self, *, done: int, planned: int, settled: int, configs: int, best: float | None,
               elapsed_s: float, budget_s: float) -> None:
        best_text = "" if best is None else f" · best CV score {best:.4f}"
        self.progress.update(self.search, completed=done, total=max(planned, done),
                             info=f"{done}/{planned} evaluations · {configs - settled} of {configs} configurations left"
                                  f"{best_text}")
        self.progress.update(self.budget, completed=min(elapsed_s, budget_s), info=f"{elapsed_s:.0f} of {budget_s:.0f}s")

    def end(self) -> None:
        if self.progress is not None:
            self.progress.stop()


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run is recorded as stopped and its worker processes are ended."""


def _raise_interrupted(signum, _frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


@app.command()
@cli_errors
def train(
    config: Path = ConfigOpt,
    run_name: str | None = typer.Option(None, "--run-name", help="Name the run folder; an existing one is resumed "
                                        "(stages that succeeded there are reused, not re-run)."),
    until: str | None = typer.Option(None, "--until", help="Stop after this stage (ingestion, validation, "
                                     "transformation, trainer, evaluation, pusher); resume with the same --run-name."),
) -> None:
    """Run the training pipeline: ingest, validate, transform, train, evaluate, push."""
    from tabpipe.config import load_settings
    from tabpipe.training.pipeline import TrainingPipeline
    from tabpipe.training.run import run_name as folder_name
    from tabpipe.stages import check_stage

    if run_name is not None:
        try:
            run_name = folder_name(run_name)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--run-name") from None
    if until is not None:
        try:
            check_stage(until)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--until") from None
    settings = load_settings(config)
    _log_to_console()
    main_thread = threading.current_thread() is threading.main_thread()   # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, _raise_interrupted) if main_thread else None
    pipeline = TrainingPipeline(settings, progress=SearchBar(err) if err.is_terminal else None)
    try:
        run = pipeline.run(run_name=run_name, until=until)
    except KeyboardInterrupt as exc:
        where = f"\nrun folder: {pipeline.last_run.dir}" if pipeline.last_run else ""
        err.print(f"[red]training stopped[/] ({exc or 'SIGINT'}){where}", highlight=False)
        raise typer.Exit(143 if isinstance(exc, Interrupted) else 130) from None
    except Exception as exc:  # the run folder holds the traceback; the person gets one line
        _record_train_run(settings, pipeline.last_run)
        where = f"\nrun folder: {pipeline.last_run.dir}" if pipeline.last_run else ""
        kind = "" if isinstance(exc, TabpipeError) else f"{type(exc).__name__}: "
        err.print(f"[red]training failed:[/] {kind}{exc}{where}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    _record_train_run(settings, run)
    rec = run.record
    out.print(f"run folder: {run.dir}")
    if rec["status"] == "partial":
        out.print(f"stopped after stage {until}; continue with: tabpipe train --config {config} --run-name {run.id}")
        return
    m = rec["metrics"]
    out.print(f"test roc_auc={m['roc_auc']:.4f} pr_auc={m['pr_auc']:.4f} f1={m['f1']:.4f} "
              f"precision={m['precision']:.4f} recall={m['recall']:.4f}")
    if rec["accepted"] and rec.get("promoted"):
        out.print(f"[green]model accepted[/]: {rec['decision']}\nproduction model: {rec['model_version']}")
    elif rec["accepted"]:
        out.print(f"[yellow]model accepted but not promoted[/]: {rec['decision']}\n{rec['push']}")
    else:
        out.print(f"[yellow]model not accepted[/]: {rec['decision']}")


def _record_train_run(settings, run, trigger_run_id: str | None = None) -> None:
    """Copy a finished or failed training run into the history store (``trigger_run_id``: the monitoring
    run that started it); a store problem only warns."""
    import os

    from tabpipe.history.open import open_history
    from tabpipe.history.lineage import describe_source, record_train_run

    if run is None:
        return
    try:
        with open_history(settings, os.environ) as store:
            record_train_run(store, run.record, run.dir, describe_source(settings.pipeline.source), trigger_run_id)
    except TabpipeError as exc:
        err.print(f"[yellow]warning:[/] run not recorded in the history store: {exc}", highlight=False)


def _score_folder(model, folder: Path, output: Path, config: Path):
    """A partitioned Parquet folder, file by file: here, or one task per file on Dask (``training.executor``)."""
    from tabpipe.config import load_settings
    from tabpipe.scoring.partitions import score_dataset

    on = _partition_executor(load_settings(config, check_candidates=False))
    return score_dataset(model if on["dask"] else model.use_all_cores(), folder, output, **on)


def _partition_executor(settings) -> dict:
    """Where a partitioned dataset's files are processed (``training.executor``): keyword arguments for
    ``score_dataset`` / ``run_monitor`` — here, or one task per file on Dask."""
    import os

    training = settings.pipeline.training
    if training.executor.type != "dask":
        return {"dask": False}
    workers = training.executor.n_workers or (training.n_jobs if training.n_jobs > 0 else os.cpu_count() or 1)
    return {"dask": True, "dask_address": training.executor.address, "n_workers": workers}


@app.command()
@cli_errors
def predict(
    input: Path = typer.Option(..., "--input", "-i", help="CSV or Parquet of rows to score (no target needed), or a "
                               "folder of Parquet files (a partitioned dataset, scored file by file)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write rows + prediction + probability (.csv/.parquet)."),
    config: Path = ConfigOpt,
    model_version: str | None = typer.Option(None, "--model-version", help="Registry version (default: production)."),
    request_id: str | None = typer.Option(None, "--request-id", help="Id the rows are logged under (default: a new one; "
                                          "rows without a schema id column join outcomes as REQUEST_ID:ROW_INDEX)."),
) -> None:
    """Score a file with the production model (or --model-version). Every row that can be scored is
    scored; rows that break a hard schema rule get an 'error' text instead of a guess (exit 1), rows
    that only break expectations are scored and named in the 'warnings' column (exit 0).
    With monitoring.log_predictions on, the scored rows are recorded in the history store."""
    from tabpipe.scoring.batch import score_file
    from tabpipe.config import load_settings

    settings = load_settings(config, check_candidates=False)
    model, meta = _registry(config).load_model(model_version)
    logger = _BatchLogger(settings, meta["version"], str(input), request_id)
    if input.is_dir():   # a partitioned Parquet dataset, file by file (not written to the prediction log)
        result = _score_folder(model, input, output, config)
    else:
        result = score_file(model.use_all_cores(), input, output, on_scored=logger)
    out.print(f"model {meta['version']}: scored {result.scored} of {result.rows} rows -> {output}")
    if logger.message:
        (err if logger.failed else out).print(logger.message, highlight=False)
    if result.warning_counts:
        counts = ", ".join(f"{column} {rule} {n}" for column, rules in result.warning_counts.items()
                           for rule, n in rules.items())
        err.print(f"[yellow]{result.rows_with_warnings} row{'s' if result.rows_with_warnings != 1 else ''} scored "
                  f"with warnings[/] (see the 'warnings' column); rows per column and rule: {counts}", highlight=False)
    if result.scored < result.rows:
        bad = result.rows - result.scored
        err.print(f"[red]{bad} row{'s' if bad != 1 else ''} could not be scored[/] "
                  f"(see the 'error' column):\n{result.errors}", highlight=False)
        raise typer.Exit(1)


@app.command()
@cli_errors
def init(
    data: Path = typer.Option(..., "--data", help="CSV or Parquet file with your rows, including the target."),
    target: str = typer.Option(..., "--target", help="The column to predict (two classes)."),
    dir: Path = typer.Option(Path("."), "--dir", help="Folder for pipeline.yaml, schema.yaml and model.yaml."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
) -> None:
    """Scaffold pipeline.yaml, schema.yaml (inferred from the data) and model.yaml for a new dataset."""
    from tabpipe.config.scaffold import scaffold

    from tabpipe.registry.signing import SIGNING_KEY_NAME, write_keypair

    written = scaffold(data, target, dir, force=force)
    if not (dir / DEFAULT_KEYS_DIR / SIGNING_KEY_NAME).exists():  # the keypair the scaffolded config names
        written += write_keypair(dir / DEFAULT_KEYS_DIR)
    for path in written:
        out.print(f"wrote {path}")
    out.print(f"next: review {written[1]}, then run: tabpipe train --config {written[0]}")


@app.command()
@cli_errors
def serve(
    config: Path = ConfigOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 for all)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    dev: bool = typer.Option(False, "--dev", help="Flask's development server (reloader, debugger off) instead of gunicorn."),
) -> None:
    """Serve the production model over HTTP (gunicorn with the shipped settings, or --dev)."""
    import os

    from tabpipe.config import load_settings
    from tabpipe.registry.signing import load_keys

    settings = load_settings(config)  # fail fast, with exit 2, on a bad config or missing keys
    load_keys(settings.pipeline.registry, os.environ, sign=settings.pipeline.serve.allow_train,
              config_file=settings.config_path)
    os.environ["TABPIPE_CONFIG"] = str(config.resolve())
    if dev:
        from tabpipe.serving.app import create_app

        create_app(config).run(host=host, port=port)
        return
    from tabpipe.serving import gunicorn_conf

    argv = [sys.executable, "-m", "gunicorn", "--config", gunicorn_conf.__file__, "--bind", f"{host}:{port}",
            "tabpipe.serving.app:create_app()"]
    # bandit B606: a fixed argv run by this very interpreter, no shell involved
    os.execv(sys.executable, argv)  # nosec B606


@app.command()
@cli_errors
def flowchart(
    config: Path = ConfigOpt,
    out_dir: Path = typer.Option(Path("Flow_Chart"), "--out", help="Folder for the .mmd, .svg and .md files."),
) -> None:
    """Write the flow chart (Mermaid + SVG) generated from the pipeline's stages and the scheduled DAGs."""
    from tabpipe.orchestration.flowchart import write

    for path in write(out_dir, config):
        out.print(f"wrote {path}")


class _BatchLogger:
    """``score_file``'s hook: records the predict run and its scored rows in the history store."""

    def __init__(self, settings, version: str, source: str, request_id: str | None):
        self.settings, self.version, self.source = settings, version, source
        self.request_id = request_id or None
        self.message, self.failed = "", False

    def __call__(self, rows, scored) -> None:
        import os

        from tabpipe.history.open import open_history, row_format
        from tabpipe.history.predlog import log_batch, new_request_id

        if self.settings.pipeline.monitoring.sample_rate == 0:
            return
        request_id = self.request_id or new_request_id()
        try:
            with open_history(self.settings, os.environ) as store:
                store.record_run(kind="predict", run_id=request_id, model_version=self.version, source=self.source,
                                 rows=len(rows))
                logged = log_batch(store, row_format(self.settings, os.environ), request_id, self.version, rows,
                                   scored["probability"].to_numpy(), scored["prediction"].to_numpy())
                store.finish_run(request_id, status="succeeded")
        except TabpipeError as exc:
            self.message, self.failed = f"[yellow]warning:[/] predictions not logged: {exc}", True
            return
        self.message = f"logged {logged} rows to the history store as request {request_id}"


def _open_history(config: Path):
    import os

    from tabpipe.config import load_settings
    from tabpipe.history.open import open_history

    settings = load_settings(config, check_candidates=False)
    return settings, open_history(settings, os.environ)


def _print_json(document) -> None:
    import json

    print(json.dumps(document, indent=2, default=str))


EXIT_RETRAIN = 3


@app.command()
@cli_errors
def monitor(
    config: Path = ConfigOpt,
    since: str | None = typer.Option(None, "--since", help="Window of the prediction log: 7d, 12h, 30m, 2w or an ISO date/time."),
    until: str | None = typer.Option(None, "--until", help="End of the log window (same forms; default: now)."),
    input: Path | None = typer.Option(None, "--input", "-i", help="Monitor the rows of a CSV/Parquet file, or of a folder of "
                                      "Parquet files (a partitioned dataset, read a row group at a time), instead of the log."),
    labels: str | None = typer.Option(None, "--labels", help="Column of --input holding the outcomes (labels)."),
    model_version: str | None = typer.Option(None, "--model-version", help="Registry version (default: production)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as ONE JSON document on stdout (logs go to stderr)."),
    retrain: bool = typer.Option(False, "--retrain", help="When the decision is 'retrain', run the training pipeline; the gate decides."),
    append_labelled: bool = typer.Option(False, "--append-labelled",
                                         help="With --retrain: train on the configured source plus the window's labelled rows."),
) -> None:
    """Check a window of predictions (drift, quality, performance), decide ok / watch / retrain, alert, report.

    Exit codes: 0 ok or watch (or --retrain ran to completion, accepted or not); 3 retrain decided
    (without --retrain); 1 an error (or the retraining run failed); 2 usage or configuration error.
    """
    import contextlib
    import json
    import os
    import time
    from datetime import datetime, timezone

    from tabpipe.config import load_settings
    from tabpipe.history.open import open_history
    from tabpipe.history.logread import read_window
    from tabpipe.monitoring.monitor import (
        MonitorSettings,
        jsonable,
        parse_since,
        run_monitor,
        window_from_dataset,
        window_from_file,
        window_from_log,
    )
    from tabpipe.training.run import new_run_dir

    if (since is None) == (input is None):
        raise typer.BadParameter("give exactly one of --since (the prediction log) or --input FILE")
    if labels is not None and input is None:
        raise typer.BadParameter("--labels names a column of --input")
    if until is not None and since is None:
        raise typer.BadParameter("--until needs --since")
    if append_labelled and not retrain:
        raise typer.BadParameter("--append-labelled only applies with --retrain")
    settings = load_settings(config, check_candidates=retrain)
    msettings = MonitorSettings.from_settings(settings)
    _log_to_console()
    now = datetime.now(timezone.utc)
    try:
        start = parse_since(since, now) if since else None
        end = parse_since(until, now) if until else now
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        registry = _registry(config)
        model, meta = registry.load_model(model_version)
        version, files = meta["version"], meta.get("files", {})
        profile = None
        if "profile.json" in files:
            from tabpipe.drift.profile import read_profile

            profile = read_profile(registry.fetch(version, "profile.json"))
        else:
            logging.getLogger("tabpipe").warning("%s has no profile.json (published before monitoring): no PSI, no estimate",
                                                 version)
        reference = None
        if msettings.evidently and "reference.parquet" in files:
            import pandas as pd

            reference = pd.read_parquet(registry.fetch(version, "reference.parquet"))
        store = open_history(settings, os.environ)
        try:
            on, read_seconds, reading = {}, {}, time.perf_counter()
            if input is not None and _streamed(input) and not append_labelled:   # read while it is monitored
                window, on = window_from_dataset(input, labels, now), _partition_executor(settings)
            elif input is not None:   # in memory (--append-labelled trains on the window's rows anyway)
                window = window_from_file(_read_whole(input), input.name, labels, now)
                read_seconds = {"read": round(time.perf_counter() - reading, 4)}
            else:
                logged = read_window(store, model.schema, since=start, until=end, version=version)
                window = window_from_log(logged, start, end)
                read_seconds = {"read": round(time.perf_counter() - reading, 4)}
            out_dir = new_run_dir(settings.pipeline.run.artifacts_dir / "monitoring")
            result = run_monitor(window, model=model, version=version, profile=profile, reference=reference,
                                 out_dir=out_dir, settings=msettings, store=store,
                                 webhook_url=os.environ.get(msettings.alerts.webhook_url_env) or None, now=now,
                                 stage_seconds=read_seconds, **on)
        finally:
            store.close()
        if retrain and result["decision"] == "retrain":
            result["retrain"] = jsonable(_retrain(settings, window, model, out_dir, append_labelled, result["run_id"]))
            (out_dir / "monitor.json").write_text(json.dumps(result, indent=2, allow_nan=False))
    if as_json:
        print(json.dumps(result, allow_nan=False))
    else:
        _print_monitoring(result)
    if result.get("retrain", {}).get("status") == "failed":
        raise typer.Exit(1)
    if result["decision"] == "retrain" and "retrain" not in result:
        raise typer.Exit(EXIT_RETRAIN)


def _streamed(path: Path) -> bool:
    """Monitored a row group at a time: a folder (a partitioned Parquet dataset) or a .parquet file."""
    return path.is_dir() or (path.is_file() and path.suffix.lower() == ".parquet")


def _read_whole(path: Path):
    """A CSV/Parquet file, or every file of a Parquet folder, as one table."""
    if not path.is_dir():
        from tabpipe.sources import read_file

        return read_file(path)
    import pandas as pd

    from tabpipe.scoring.partitions import iter_partitions

    return pd.concat(iter_partitions(path), ignore_index=True)


def _retrain(settings, window, model, out_dir: Path, append_labelled: bool, monitor_run_id: str) -> dict:
    """Run the training pipeline (optionally on source + the window's labelled rows); the gate decides.
    The combined table is the training run's source: ``retrain_data.csv`` in the monitoring run folder, or,
    when the schema has sensitive columns (never in clear in a run folder), a temporary file removed after.
    The training run is recorded as started by the monitoring run ``monitor_run_id``."""
    import contextlib
    import tempfile

    from tabpipe.monitoring.monitor import labelled_rows

    with contextlib.ExitStack() as stack:
        if settings.schema_.sensitive:
            out_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tabpipe-retrain-")))
        extra = labelled_rows(window, settings.schema_.target.name, model.labels) if append_labelled else None
        used, info = _retrain_data(settings, extra, out_dir)
        if settings.schema_.sensitive and "data_file" in info:
            info["data_file"] = None
            info["note"] = ("the schema has sensitive columns: the combined table was a temporary file outside the "
                            "run folder, removed after training; the run's data fingerprint identifies it")
        return _train_once(used, info, monitor_run_id)


def _retrain_data(settings, extra, out_dir: Path) -> tuple:
    """(settings whose source is the configured source + ``extra`` rows, description); ``extra`` None: as is."""
    if extra is None:
        return settings, {"data": "the configured source"}
    if len(extra) == 0:
        return settings, {"data": "the configured source", "note": "the window has no labelled rows: nothing appended"}
    import pandas as pd

    from tabpipe.sources import FileSource, read_source

    base = read_source(settings.pipeline.source, settings.base_dir)
    combined = pd.concat([base, extra[[c for c in extra.columns if c in base.columns]]], ignore_index=True)
    path = out_dir / "retrain_data.csv"
    combined.to_csv(path, index=False)
    used = settings.model_copy(update={"pipeline": settings.pipeline.model_copy(
        update={"source": FileSource(type="file", path=path)})})
    return used, {"data": f"the configured source ({len(base)} rows) + {len(extra)} labelled rows of the window",
                  "data_file": str(path)}


def _train_once(used, info: dict, monitor_run_id: str) -> dict:
    """One training run (the gate decides), recorded in the history store as started by the monitoring run
    ``monitor_run_id``; its summary for monitor.json."""
    from tabpipe.training.pipeline import TrainingPipeline

    pipeline = TrainingPipeline(used)
    try:
        run = pipeline.run()
    except Exception as exc:  # the run folder holds the traceback; the result says where
        _record_train_run(used, pipeline.last_run, monitor_run_id)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                "run_folder": str(pipeline.last_run.dir) if pipeline.last_run else None, **info}
    _record_train_run(used, run, monitor_run_id)
    rec = run.record
    return {"status": "succeeded", "run_folder": str(run.dir), "accepted": rec["accepted"], "decision": rec["decision"],
            "model_version": rec["model_version"], "metrics": rec["metrics"], **info}


def _print_monitoring(result: dict) -> None:
    colour = {"ok": "green", "watch": "yellow", "retrain": "red"}[result["decision"]]
    w = result["window"]
    out.print(f"model {result['model_version']}, {w['description']}: {w['rows']} rows "
              f"({w['scored_rows']} scored, {w['labelled_rows']} with outcomes)")
    out.print(f"decision: [{colour}]{result['decision']}[/]")
    for reason in result["reasons"]:
        out.print(f"  - {reason['message']}", highlight=False)
    for note in result["not_checked"]:
        out.print(f"  (not checked: {note})", highlight=False)
    for kind in ("realised", "estimated"):
        m = result["metrics"][kind]
        if m:
            out.print(f"{kind}: roc_auc={m['roc_auc']:.4f} pr_auc={m['pr_auc']:.4f} precision={m['precision']:.4f} "
                      f"recall={m['recall']:.4f} f1={m['f1']:.4f}")
    if result["alert"]:
        d = result["alert"]["delivery"]
        out.print(f"alert: {d['status']}" + (f" ({d['error']})" if d["error"] else ""), highlight=False)
    out.print(f"report: {result['reports']['html']}")
    if "retrain" in result:
        r = result["retrain"]
        if r["status"] == "failed":
            err.print(f"[red]retraining failed:[/] {r['error']}\nrun folder: {r['run_folder']}", highlight=False)
        else:
            verdict = f"[green]accepted[/]: {r['model_version']}" if r["accepted"] else "[yellow]not accepted[/]"
            out.print(f"retrained ({r['data']}), run folder {r['run_folder']}: {verdict} — {r['decision']}")


@app.command()
@cli_errors
def outcomes(
    input: Path = typer.Option(..., "--input", "-i", help="CSV or Parquet with an id column and a label column."),
    id_column: str = typer.Option(..., "--id-column", help="Column holding each scored row's id (docs/monitoring_store.md)."),
    label_column: str | None = typer.Option(None, "--label-column", help="Column holding the outcome (default: the schema's target)."),
    model_version: str | None = typer.Option(None, "--model-version", help="Only attach to predictions of this version."),
    config: Path = ConfigOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON document."),
) -> None:
    """Join arriving labels to logged predictions and record the realised metrics."""
    import os
    from dataclasses import asdict

    from tabpipe.history.open import protector
    from tabpipe.monitoring.outcomes import read_labels, record_outcomes

    labels = read_labels(input)
    settings, store = _open_history(config)
    with store:
        run_id = store.record_run(kind="outcomes", source=f"file {input}", rows=len(labels))
        try:
            result = record_outcomes(store, labels, id_column=id_column,
                                     label_column=label_column or settings.schema_.target.name,
                                     positive=settings.schema_.target.positive, protector=protector(settings, os.environ),
                                     version=model_version, where=str(input), run_id=run_id)
        except TabpipeError as exc:
            store.finish_run(run_id, status="failed", error=str(exc))
            raise
        store.finish_run(run_id, status="succeeded", rows=result.matched)
    if as_json:
        _print_json(asdict(result))
        return
    out.print(f"{result.labels} labelled ids ({result.skipped} rows without id or label skipped): "
              f"{result.matched} logged predictions labelled, {result.unmatched_ids} ids not found in the log")
    for window in result.windows:
        m = window["metrics"]
        auc = "n/a (one class)" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}"
        out.print(f"{window['version']} {window['window_start'][:19]} .. {window['window_end'][:19]}: {window['rows']} rows, "
                  f"roc_auc={auc} precision={m['precision']:.4f} recall={m['recall']:.4f} f1={m['f1']:.4f}")


@runs_app.command("list")
@cli_errors
def runs_list(config: Path = ConfigOpt, kind: str | None = typer.Option(None, "--kind", help="train | predict | monitor | outcomes"),
              limit: int = typer.Option(20, "--limit", min=1)) -> None:
    """The newest runs recorded in the history store."""
    _, store = _open_history(config)
    with store:
        runs = store.runs(kind=kind, limit=limit)
    if runs.empty:
        out.print(f"no runs in the history store {store.url}")
        return
    import pandas as pd

    table = Table("run", "kind", "status", "started (UTC)", "seconds", "rows", "model")
    for run in runs.itertuples():
        seconds = "" if pd.isna(run.finished_at) else f"{(run.finished_at - run.started_at).total_seconds():.1f}"
        table.add_row(run.run_id, run.kind, run.status, str(run.started_at)[:19], seconds,
                      "" if pd.isna(run.rows) else str(int(run.rows)), "" if pd.isna(run.model_version) else run.model_version)
    out.print(table)


@runs_app.command("show")
@cli_errors
def runs_show(run_id: str = typer.Argument(..., help="Run id, as shown by `tabpipe runs list`."),
              config: Path = ConfigOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """One run: status, timings per stage, source, data quality, drift and alerts it recorded."""
    from tabpipe.history.lineage import run_details

    _, store = _open_history(config)
    with store:
        details = run_details(store, run_id)
    if details is None:
        err.print(f"[red]error:[/] no run {run_id!r} in the history store {store.url}", highlight=False)
        raise typer.Exit(1)
    if as_json:
        _print_json(details)
        return
    for key in ("run_id", "kind", "status", "error", "started_at", "finished_at", "model_version", "rows",
                "data_fingerprint", "source", "config_ref"):
        if details.get(key) is not None:
            out.print(f"{key}: {details[key]}", highlight=False)
    for name, seconds in (details.get("stage_seconds") or {}).items():
        out.print(f"  stage {name}: {seconds}s")
    for row in details["quality"]:
        out.print(f"  quality {row['column_name'] or 'overall'}: " + ", ".join(
            f"{k}={v:.4g}" for k, v in row.items() if k not in ("id", "run_id", "column_name") and v is not None))
    for row in details["drift"]:
        psi = "n/a" if row["psi"] is None else f"{row['psi']:.3f}"
        out.print(f"  drift {row['feature']}: psi={psi} {row['verdict']}")
    for row in details["alerts"]:
        out.print(f"  alert {row['rule']}: observed={row['observed']} threshold={row['threshold']} {row['status']}")


@app.command()
@cli_errors
def lineage(version: str = typer.Argument(..., help="Registry version, e.g. v0002."), config: Path = ConfigOpt,
            as_json: bool = typer.Option(False, "--json", help="Print everything as one JSON document.")) -> None:
    """From a model version back to its run, config snapshot, data and source; forward to its
    monitoring windows, drift and alerts."""
    from tabpipe.history.lineage import lineage as trace

    registry = _registry(config)
    meta = registry.metadata(version)
    _, store = _open_history(config)
    with store:
        document = trace(version, meta, store, is_production=registry.production_version() == version)
    if as_json:
        _print_json(document)
        return
    training, model = document["training"], document["model"]
    out.print(f"model {version}{' (production)' if document['is_production'] else ''}: {model['candidate']}, "
              f"created {model['created_at']}", highlight=False)
    out.print(f"  trained by run {training['run_id']} ({training['status'] or 'not in the store'}) on "
              f"{training['rows']} rows, data fingerprint {training['data_fingerprint']}", highlight=False)
    out.print(f"  source: {training['source']}", highlight=False)
    out.print(f"  config snapshot: {training['config_ref']}" + (f" ({training['note']})" if training.get("note") else ""),
              highlight=False)
    trigger = training.get("triggered_by")
    if trigger:
        rules = ", ".join(sorted({a["rule"] for a in trigger["alerts"]})) or "no alert recorded"
        out.print(f"  retrained after monitoring run {trigger['run_id']} of {trigger['model_version']} "
                  f"({trigger['window']}, {trigger['rows']} rows; alerts: {rules})", highlight=False)
    p = document["predictions"]
    out.print(f"  predictions logged: {p['logged']} ({p['labelled']} with outcomes) {p['first'] or ''} .. {p['last'] or ''}",
              highlight=False)
    for window in document["windows"]:
        out.print(f"  window {str(window['window_start'])[:19]} .. {str(window['window_end'])[:19]} {window['metric']}: "
                  f"estimated={window['estimated']} realised={window['realised']}", highlight=False)
    for item in document["drift"]:
        out.print(f"  drift {str(item['window_start'])[:19]}: {item['drifted']}/{item['features']} features drifted, "
                  f"max psi {item['max_psi']}, score psi {item['score_psi']} (run {item['run_id']})", highlight=False)
    for alert in document["alerts"]:
        out.print(f"  alert {alert['created_at'][:19]} {alert['rule']}: observed={alert['observed']} "
                  f"threshold={alert['threshold']} ({alert['status']})", highlight=False)


@models_app.command("list")
@cli_errors
def models_list(config: Path = ConfigOpt) -> None:
    """List registry versions with their test metrics; '*' marks production."""
    from tabpipe.errors import RegistryError

    registry = _registry(config)
    try:
        registry.production_version()
    except RegistryError as exc:  # still list the versions: promoting one of them is the repair
        err.print(f"[yellow]warning:[/] {exc}", highlight=False)
    versions = registry.list_versions()
    if not versions:
        out.print("registry is empty")
        return
    table = Table("", "version", "created (UTC)", "candidate", "roc_auc", "pr_auc", "run", "verified")
    for v in versions:
        m = v.metadata.get("metrics", {})
        m = m if isinstance(m, dict) else {}
        table.add_row("*" if v.is_production else "", v.version, v.created_at[:19], str(v.metadata.get("candidate", "")),
                      _number(m.get("roc_auc")), _number(m.get("pr_auc")), str(v.metadata.get("run_id", "")),
                      "yes" if v.problem is None else f"NO: {v.problem}")
    out.print(table)


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


@models_app.command("promote")
@cli_errors
def models_promote(version: str = typer.Argument(..., help="Version to make production, e.g. v0002."),
                   config: Path = ConfigOpt) -> None:
    """Point production at VERSION (also how you roll back), after proving it loads.

    ``tabpipe models verify VERSION`` runs first in a separate process (signature, checksums,
    unpickling), so nothing is unpickled here; the pointer then moves only if production is still
    what it was when this command started (compare-and-swap).
    """
    import subprocess  # nosec B404 -- runs this interpreter's own `tabpipe models verify`

    from tabpipe.errors import RegistryError
    from tabpipe.registry import ANY

    registry = _registry(config, sign=True)
    try:
        before = registry.production_version()
    except RegistryError as exc:  # an untrusted pointer (forged, rolled back): this promotion replaces it
        err.print(f"[yellow]warning:[/] {exc}; it will be replaced", highlight=False)
        before = ANY
    registry.metadata(version)  # fail fast (exit 1, one line) on an unknown or unsigned version
    proof = subprocess.run([sys.executable, "-m", "tabpipe.cli", "models", "verify", version, "--config", str(config)],  # nosec B603 -- fixed argv, no shell
                           capture_output=True, text=True, timeout=900)
    if proof.returncode != 0:
        detail = (proof.stderr.strip() or proof.stdout.strip() or f"exit code {proof.returncode}").removeprefix("error: ")
        raise RegistryError(f"{version} did not load, production unchanged: {detail}")
    registry.promote(version, expected=before)
    out.print(f"production: {before if before is not ANY else 'untrusted pointer'} -> {version}")


@models_app.command("verify")
@cli_errors
def models_verify(version: str = typer.Argument(..., help="Version to check, e.g. v0002."),
                  config: Path = ConfigOpt) -> None:
    """Prove VERSION loads: signature, file checksums, unpickling, and a model with predict_proba."""
    from tabpipe.errors import RegistryError

    model, meta = _registry(config).load_model(version)
    if not callable(getattr(model, "predict_proba", None)):
        raise RegistryError(f"{version}/model.pkl loads, but is not a model with predict_proba")
    out.print(f"{version}: signature, {len(meta['files'])} file checksum(s) and loading verified "
              f"({type(model).__name__})")


@models_app.command("sign")
@cli_errors
def models_sign(version: str = typer.Argument(..., help="Version to sign, e.g. v0002."),
                config: Path = ConfigOpt) -> None:
    """Sign VERSION with the signing key after checking its files against their checksums.

    For versions published unsigned or by an older tabpipe (HMAC): signing vouches for them, so
    sign only versions you know are genuine.
    """
    meta = _registry(config, sign=True).sign_version(version)
    out.print(f"signed {version} (key {meta['signature']['key_id']}, {len(meta['files'])} files checked)")


@keys_app.command("generate")
@cli_errors
def keys_generate(
    dir: Path = typer.Option(DEFAULT_KEYS_DIR, "--dir", help="Folder for the keypair (kept out of git)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing keypair (old versions then no longer verify)."),
) -> None:
    """Write a new Ed25519 keypair: the private key (mode 0600) signs on the trainer only; the
    public key goes to every host that loads models."""
    from tabpipe.registry.signing import write_keypair

    try:
        private, public = write_keypair(dir, force=force)
    except FileExistsError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"wrote {private} (private: the trainer only, mode 0600)\nwrote {public} (public: every server)")


@data_app.command("generate")
@cli_errors
def data_generate(
    rows: int = typer.Option(..., "--rows", min=1, help="Number of rows."),
    out_path: Path = typer.Option(..., "--out", help="Output .csv or .parquet."),
    seed: int = typer.Option(0, "--seed"),
    shift: float = typer.Option(0.0, "--shift", help="Distribution shift for drift demos (0 = base, 1 = strong)."),
) -> None:
    """Generate synthetic telecom cell KPIs with a noisy, imbalanced fault_flag target."""
    from tabpipe.sources.sample import generate, write

    df = generate(rows, seed=seed, shift=shift)
    write(df, out_path)
    out.print(f"wrote {len(df)} rows to {out_path} ({df['fault_flag'].mean():.1%} positives)")


@data_app.command("push-mongo")
@cli_errors
def data_push_mongo(
    input: Path = typer.Option(..., "--input", "-i", help="CSV or Parquet to load."),
    uri_env: str = typer.Option("MONGODB_URI", "--uri-env", help="Name of the environment variable holding the URI."),
    db: str = typer.Option(..., "--db"),
    collection: str = typer.Option(..., "--collection"),
    replace: bool = typer.Option(False, "--replace", help="Drop the collection first."),
) -> None:
    """Load a CSV/Parquet file into a MongoDB collection (how you seed the `mongodb` source)."""
    import os

    from tabpipe.sources import push_to_mongo, read_file

    uri = os.environ.get(uri_env)
    if not uri:
        err.print(f"[red]error:[/] environment variable {uri_env} is not set (it must hold the MongoDB URI)")
        raise typer.Exit(2)
    n = push_to_mongo(read_file(input), uri, db, collection, replace=replace)
    out.print(f"inserted {n} documents into {db}.{collection}")


def main() -> None:
    """The ``tabpipe`` console script."""
    from tabpipe.edge import prepare_process

    prepare_process()
    app()


if __name__ == "__main__":
    sys.exit(main())
