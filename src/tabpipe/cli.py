"""The ``tabpipe`` command line.

Exit codes: 0 done; 1 a stage or the data failed (message printed, details in the run folder);
2 usage or configuration error (one line naming the file and key).
"""
from __future__ import annotations

import functools
import logging
import signal
import sys
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
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
# no hard wrapping at 80 columns when piped (CI logs, files): one message stays one line
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
DEFAULT_CONFIG = Path("config/pipeline.yaml")
ConfigOpt = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="pipeline.yaml to use.")


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


def _registry(config: Path):
    from tabpipe.config import load_settings
    from tabpipe.registry import ModelRegistry

    return ModelRegistry.from_config(load_settings(config, check_candidates=False).pipeline.registry)


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
def train(config: Path = ConfigOpt) -> None:
    """Run the training pipeline: ingest, validate, transform, train, evaluate, push."""
    from tabpipe.config import load_settings
    from tabpipe.pipeline import TrainingPipeline

    settings = load_settings(config)
    _log_to_console()
    signal.signal(signal.SIGTERM, _raise_interrupted)
    pipeline = TrainingPipeline(settings, progress=SearchBar(err) if err.is_terminal else None)
    try:
        run = pipeline.run()
    except KeyboardInterrupt as exc:
        where = f"\nrun folder: {pipeline.last_run.dir}" if pipeline.last_run else ""
        err.print(f"[red]training stopped[/] ({exc or 'SIGINT'}){where}", highlight=False)
        raise typer.Exit(143 if isinstance(exc, Interrupted) else 130) from None
    except Exception as exc:  # the run folder holds the traceback; the person gets one line
        where = f"\nrun folder: {pipeline.last_run.dir}" if pipeline.last_run else ""
        kind = "" if isinstance(exc, TabpipeError) else f"{type(exc).__name__}: "
        err.print(f"[red]training failed:[/] {kind}{exc}{where}", highlight=False)
        raise typer.Exit(1) from None
    rec = run.record
    m = rec["metrics"]
    out.print(f"run folder: {run.dir}")
    out.print(f"test roc_auc={m['roc_auc']:.4f} pr_auc={m['pr_auc']:.4f} f1={m['f1']:.4f} "
              f"precision={m['precision']:.4f} recall={m['recall']:.4f}")
    if rec["accepted"]:
        out.print(f"[green]model accepted[/]: {rec['decision']}\nproduction model: {rec['model_version']}")
    else:
        out.print(f"[yellow]model not accepted[/]: {rec['decision']}")


@app.command()
@cli_errors
def predict(
    input: Path = typer.Option(..., "--input", "-i", help="CSV or Parquet of rows to score (no target needed)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write rows + prediction + probability (.csv/.parquet)."),
    config: Path = ConfigOpt,
    model_version: str | None = typer.Option(None, "--model-version", help="Registry version (default: production)."),
) -> None:
    """Score a file with the production model (or --model-version). Rows that break the schema are
    reported (error column, exit 1), never guessed."""
    from tabpipe.batch import score_file

    model, meta = _registry(config).load_model(model_version)
    result = score_file(model.use_all_cores(), input, output)
    out.print(f"model {meta['version']}: scored {result.scored} of {result.rows} rows -> {output}")
    if result.problems:
        bad = result.rows - result.scored
        err.print(f"[yellow]{bad} row{'s' if bad != 1 else ''} violate{'s' if bad == 1 else ''} the schema[/] "
                  f"(see the 'error' column):\n{result.problems}",
                  highlight=False)
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

    written = scaffold(data, target, dir, force=force)
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

    load_settings(config)  # fail fast, with exit 2, on a bad config
    os.environ["TABPIPE_CONFIG"] = str(config.resolve())
    if dev:
        from tabpipe.serving.app import create_app

        create_app(config).run(host=host, port=port)
        return
    from tabpipe.serving import gunicorn_conf

    argv = [sys.executable, "-m", "gunicorn", "--config", gunicorn_conf.__file__, "--bind", f"{host}:{port}",
            "tabpipe.serving.app:create_app()"]
    os.execv(sys.executable, argv)


@models_app.command("list")
@cli_errors
def models_list(config: Path = ConfigOpt) -> None:
    """List registry versions with their test metrics; '*' marks production."""
    versions = _registry(config).list_versions()
    if not versions:
        out.print("registry is empty")
        return
    table = Table("", "version", "created (UTC)", "candidate", "roc_auc", "pr_auc", "run")
    for v in versions:
        m = v.metadata.get("metrics", {})
        table.add_row("*" if v.is_production else "", v.version, v.created_at[:19], str(v.metadata.get("candidate", "")),
                      f"{m.get('roc_auc', float('nan')):.4f}", f"{m.get('pr_auc', float('nan')):.4f}",
                      str(v.metadata.get("run_id", "")))
    out.print(table)


@models_app.command("promote")
@cli_errors
def models_promote(version: str = typer.Argument(..., help="Version to make production, e.g. v0002."),
                   config: Path = ConfigOpt) -> None:
    """Point production at VERSION (also how you roll back)."""
    registry = _registry(config)
    before = registry.production_version()
    registry.promote(version)
    out.print(f"production: {before} -> {version}")


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
