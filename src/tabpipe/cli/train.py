"""``tabpipe train``: the training pipeline, with the model search's progress bar on a terminal.

Exit codes: 0 done (accepted or not, or stopped at ``--until``); 1 the run failed (the run folder
holds the traceback); 2 usage or configuration; 130 / 143 stopped by Ctrl-C / SIGTERM.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tabpipe.cli.common import ConfigOpt, cli_errors, err, log_to_console, out, warn
from tabpipe.errors import TabpipeError


class SearchBar:
    """The model search on a terminal: evaluations done of planned, configurations left, best CV score,
    budget used. (Not on a terminal, the trainer's log lines say the same.)"""

    def __init__(self, console: Console):
        self.console = console
        self.progress: Progress | None = None

    def begin(self, configs: int, evaluations: int, budget_s: float) -> None:
        """Show the bars: ``evaluations`` planned over ``configs`` configurations, ``budget_s`` seconds."""
        self.progress = Progress(TextColumn("{task.description:>6}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), console=self.console)
        self.search = self.progress.add_task("search", total=evaluations,
                                             info=f"0/{evaluations} evaluations · {configs} configurations left")
        self.budget = self.progress.add_task("budget", total=budget_s, info=f"0 of {budget_s:.0f}s")
        self.progress.start()

    def update(self, *, done: int, planned: int, settled: int, configs: int, best: float | None,
               elapsed_s: float, budget_s: float) -> None:
        """Move the bars to the search's current state."""
        best_text = "" if best is None else f" · best CV score {best:.4f}"
        self.progress.update(self.search, completed=done, total=max(planned, done),
                             info=f"{done}/{planned} evaluations · {configs - settled} of {configs} configurations left"
                                  f"{best_text}")
        self.progress.update(self.budget, completed=min(elapsed_s, budget_s), info=f"{elapsed_s:.0f} of {budget_s:.0f}s")

    def end(self) -> None:
        """Stop drawing (the bars stay on screen)."""
        if self.progress is not None:
            self.progress.stop()


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run is recorded as stopped and its worker processes are ended."""


def _raise_interrupted(signum, _frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


@cli_errors
def train(
    config: Path = ConfigOpt,
    run_name: str | None = typer.Option(None, "--run-name", help="Name the run folder; an existing one is resumed "
                                        "(stages that succeeded there are reused, not re-run)."),
    until: str | None = typer.Option(None, "--until", help="Stop after this stage (ingestion, validation, "
                                     "transformation, trainer, evaluation, pusher); resume with the same --run-name."),
) -> None:
    """Run the training pipeline: ingest, validate, transform, train, evaluate, push."""
    import os

    from tabpipe.config import load_settings
    from tabpipe.stages import check_stage
    from tabpipe.training.pipeline import TrainingPipeline
    from tabpipe.training.run import run_name as folder_name

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
    log_to_console()
    main_thread = threading.current_thread() is threading.main_thread()   # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, _raise_interrupted) if main_thread else None
    pipeline = TrainingPipeline(settings, progress=SearchBar(err) if err.is_terminal else None, environ=os.environ)
    try:
        run = pipeline.run(run_name=run_name, until=until)
    except KeyboardInterrupt as exc:
        where = f"\nrun folder: {pipeline.last_run.dir}" if pipeline.last_run else ""
        err.print(f"[red]training stopped[/] ({exc or 'SIGINT'}){where}", highlight=False)
        raise typer.Exit(143 if isinstance(exc, Interrupted) else 130) from None
    except Exception as exc:  # the run folder holds the traceback; the person gets one line
        _record(settings, pipeline.last_run)
        where = f"\nrun folder: {pipeline.last_run.dir}" if pipeline.last_run else ""
        kind = "" if isinstance(exc, TabpipeError) else f"{type(exc).__name__}: "
        err.print(f"[red]training failed:[/] {kind}{exc}{where}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    _record(settings, run)
    rec = run.record
    out.print(f"run folder: {run.dir}")
    if rec["status"] == "partial":
        out.print(f"stopped after stage {until}; continue with: tabpipe train --config {config} --run-name {run.id}")
        return
    m = rec["metrics"]
    out.print(f"test roc_auc={m['roc_auc']:.4f} pr_auc={m['pr_auc']:.4f} f1={m['f1']:.4f} "
              f"precision={m['precision']:.4f} recall={m['recall']:.4f} ece={m['ece']:.4f} brier={m['brier']:.4f}")
    if rec["accepted"] and rec.get("promoted"):
        out.print(f"[green]model accepted[/]: {rec['decision']}\nproduction model: {rec['model_version']}")
    elif rec["accepted"]:
        out.print(f"[yellow]model accepted but not promoted[/]: {rec['decision']}\n{rec['push']}")
    else:
        out.print(f"[yellow]model not accepted[/]: {rec['decision']}")


def _record(settings, run) -> None:
    """The run in the history store (a store problem only warns)."""
    import os

    from tabpipe.monitoring.job import record_training_run

    record_training_run(settings, run, environ=os.environ, warn=warn)
