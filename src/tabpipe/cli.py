"""The ``tabpipe`` command line.

Exit codes: 0 done; 1 a stage or the data failed (message printed, details in the run folder);
2 usage or configuration error (one line naming the file and key).
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
models_app = typer.Typer(help="The model registry: list versions, promote (or roll back).", no_args_is_help=True)
keys_app = typer.Typer(help="The Ed25519 keypair that signs registry versions.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
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
    from tabpipe.pipeline import TrainingPipeline
    from tabpipe.run import run_name as folder_name
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
        where = f"\nrun folder: {pipeline.last_run.dir}" if pipeline.last_run else ""
        kind = "" if isinstance(exc, TabpipeError) else f"{type(exc).__name__}: "
        err.print(f"[red]training failed:[/] {kind}{exc}{where}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
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


def _score_folder(model, folder: Path, output: Path, config: Path):
    """A partitioned Parquet folder, file by file: here, or one task per file on Dask (``training.executor``)."""
    import os

    from tabpipe.config import load_settings
    from tabpipe.partitions import score_dataset

    training = load_settings(config, check_candidates=False).pipeline.training
    if training.executor.type != "dask":
        return score_dataset(model.use_all_cores(), folder, output)
    workers = training.executor.n_workers or (training.n_jobs if training.n_jobs > 0 else os.cpu_count() or 1)
    return score_dataset(model, folder, output, dask=True, dask_address=training.executor.address, n_workers=workers)


@app.command()
@cli_errors
def predict(
    input: Path = typer.Option(..., "--input", "-i", help="CSV or Parquet of rows to score (no target needed), or a "
                               "folder of Parquet files (a partitioned dataset, scored file by file)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write rows + prediction + probability (.csv/.parquet)."),
    config: Path = ConfigOpt,
    model_version: str | None = typer.Option(None, "--model-version", help="Registry version (default: production)."),
) -> None:
    """Score a file with the production model (or --model-version). Every row that can be scored is
    scored; rows that break a hard schema rule get an 'error' text instead of a guess (exit 1), rows
    that only break expectations are scored and named in the 'warnings' column (exit 0)."""
    from tabpipe.batch import score_file

    model, meta = _registry(config).load_model(model_version)
    if input.is_dir():
        result = _score_folder(model, input, output, config)
    else:
        result = score_file(model.use_all_cores(), input, output)
    out.print(f"model {meta['version']}: scored {result.scored} of {result.rows} rows -> {output}")
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
    from tabpipe.scaffold import scaffold

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
    from tabpipe.flowchart import write

    for path in write(out_dir, config):
        out.print(f"wrote {path}")


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
    import subprocess

    from tabpipe.errors import RegistryError
    from tabpipe.registry import ANY

    registry = _registry(config, sign=True)
    try:
        before = registry.production_version()
    except RegistryError as exc:  # an untrusted pointer (forged, rolled back): this promotion replaces it
        err.print(f"[yellow]warning:[/] {exc}; it will be replaced", highlight=False)
        before = ANY
    registry.metadata(version)  # fail fast (exit 1, one line) on an unknown or unsigned version
    proof = subprocess.run([sys.executable, "-m", "tabpipe.cli", "models", "verify", version, "--config", str(config)],
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
    from tabpipe.sample_data import generate, write

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
    app()


if __name__ == "__main__":
    sys.exit(main())
