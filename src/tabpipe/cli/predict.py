"""``tabpipe predict``: score a file, or a partitioned Parquet folder file by file, and log the scored rows.

Exit codes: 0 every row scored (some maybe with warnings); 1 rows that could not be scored (their
'error' column says why) or a registry/data error; 2 usage or configuration.
"""
from __future__ import annotations

from pathlib import Path

import typer

from tabpipe.cli.common import ConfigOpt, cli_errors, err, open_registry_of, out
from tabpipe.errors import TabpipeError


@cli_errors
def predict(
    input: Path = typer.Option(..., "--input", "-i", help="CSV or Parquet of rows to score (no target needed), or a "
                               "folder of Parquet files (a partitioned dataset, scored file by file)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write rows + prediction + probability + score (.csv/.parquet)."),
    config: Path = ConfigOpt,
    model_version: str | None = typer.Option(None, "--model-version", help="Registry version (default: production)."),
    request_id: str | None = typer.Option(None, "--request-id", help="Id the rows are logged under (default: a new one; "
                                          "rows without a schema id column join outcomes as REQUEST_ID:ROW_INDEX)."),
    explain: int = typer.Option(0, "--explain", min=0, max=1000, help="Add each row's K largest reasons: columns "
                                "reason_base, reason_logit, reason_I_column, reason_I_contribution (log-odds of the "
                                "raw score; base + all contributions = reason_logit)."),
) -> None:
    """Score a file with the production model (or --model-version). Every row that can be scored is
    scored; rows that break a hard schema rule get an 'error' text instead of a guess (exit 1), rows
    that only break expectations are scored and named in the 'warnings' column (exit 0).
    With monitoring.log_predictions on, the scored rows are recorded in the history store.
    --explain K adds each scored row's top K reasons (docs/serving.md#per-row-reasons)."""
    from tabpipe.config import load_settings
    from tabpipe.scoring.batch import score_file

    settings = load_settings(config, check_candidates=False)
    model, meta = open_registry_of(config).load_model(model_version)
    logger = _BatchLogger(settings, meta["version"], str(input), request_id)
    if explain:
        _check_explainable(model, input)
    if input.is_dir():   # a partitioned Parquet dataset, file by file (not written to the prediction log)
        result = _score_folder(model, input, output, config)
    else:
        with logger:
            result = score_file(model.use_all_cores(), input, output, on_scored=logger, explain=explain)
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


def _check_explainable(model, input: Path) -> None:
    """Usage error (exit 2) when --explain cannot be honoured: a folder input, or a model not explained."""
    from tabpipe.scoring.explain import NotExplainable, explainer_for

    if input.is_dir():
        raise typer.BadParameter("--explain scores a file, not a folder of Parquet files", param_hint="--explain")
    try:
        explainer_for(model)
    except NotExplainable as exc:
        raise typer.BadParameter(f"not available for this model: {exc}", param_hint="--explain") from None


def _score_folder(model, folder: Path, output: Path, config: Path):
    """A partitioned Parquet folder, file by file: here, or one task per file on Dask (``training.executor``)."""
    from tabpipe.config import load_settings
    from tabpipe.monitoring.job import partition_executor
    from tabpipe.scoring.partitions import score_dataset

    on = partition_executor(load_settings(config, check_candidates=False))
    return score_dataset(model if on["dask"] else model.use_all_cores(), folder, output, **on)


class _BatchLogger:
    """``score_file``'s hook: records the predict run and its scored rows in the history store, chunk by chunk
    (one run; each chunk's rows keep their row index in the file). Used as a context manager around the
    scoring: the run is finished (succeeded, or failed when the scoring stopped) and the store closed."""

    def __init__(self, settings, version: str, source: str, request_id: str | None):
        self.settings, self.version, self.source = settings, version, source
        self.request_id = request_id or None
        self.message, self.failed = "", False
        self._stack = self._store = None
        self._rows = self._logged = 0

    def __enter__(self) -> _BatchLogger:
        return self

    def __call__(self, rows, scored, first_row: int = 0) -> None:
        from tabpipe.history.predlog import log_batch

        if self.settings.pipeline.monitoring.sample_rate == 0 or self.failed:
            return
        try:
            if self._store is None:
                self._open()
            self._rows = first_row + len(rows)
            self._logged += log_batch(self._store, self._format, self.request_id, self.version, rows, scored.proba,
                                      scored.labels, first_row=first_row)
        except TabpipeError as exc:
            self._fail(exc)

    def _open(self) -> None:
        import os
        from contextlib import ExitStack

        from tabpipe.history.open import open_history, row_format
        from tabpipe.history.predlog import new_request_id

        self.request_id = self.request_id or new_request_id()
        self._stack = ExitStack()
        self._store = self._stack.enter_context(open_history(self.settings, os.environ))
        self._format = row_format(self.settings, os.environ)
        self._store.record_run(kind="predict", run_id=self.request_id, model_version=self.version, source=self.source,
                               rows=0)

    def _fail(self, exc: Exception) -> None:
        self.message, self.failed = f"[yellow]warning:[/] predictions not logged: {exc}", True
        self._close()

    def _close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._store = self._stack, None, None
            stack.close()

    def __exit__(self, kind, error, traceback) -> None:
        if self._store is None:
            return
        try:
            self._store.finish_run(self.request_id, status="succeeded" if kind is None else "failed",
                                   rows=self._rows, error=None if kind is None else str(error)[:500])
        except TabpipeError as exc:
            self._fail(exc)
            return
        self._close()
        self.message = f"logged {self._logged} rows to the history store as request {self.request_id}"
