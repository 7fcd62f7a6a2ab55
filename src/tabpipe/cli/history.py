"""``tabpipe runs list|show``, ``tabpipe lineage`` and ``tabpipe log compact``: the history store (and the registry).

Exit codes: 0 done; 1 no such run, version or store; 2 usage or configuration.
"""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tabpipe.cli.common import ConfigOpt, cli_errors, err, open_history_of, open_registry_of, out, print_json

runs_app = typer.Typer(help="The history store's runs: train, predict, monitor, outcomes.", no_args_is_help=True)
log_app = typer.Typer(help="The columnar prediction log's files.", no_args_is_help=True)


@runs_app.command("list")
@cli_errors
def runs_list(config: Path = ConfigOpt, kind: str | None = typer.Option(None, "--kind", help="train | predict | monitor | outcomes"),
              limit: int = typer.Option(20, "--limit", min=1)) -> None:
    """The newest runs recorded in the history store."""
    _, store = open_history_of(config)
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

    _, store = open_history_of(config)
    with store:
        details = run_details(store, run_id)
    if details is None:
        err.print(f"[red]error:[/] no run {run_id!r} in the history store {store.url}", highlight=False)
        raise typer.Exit(1)
    if as_json:
        print_json(details)
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


@cli_errors
def lineage(version: str = typer.Argument(..., help="Registry version, e.g. v0002."), config: Path = ConfigOpt,
            as_json: bool = typer.Option(False, "--json", help="Print everything as one JSON document.")) -> None:
    """From a model version back to its run, config snapshot, data and source; forward to its
    monitoring windows, drift and alerts."""
    from tabpipe.history.lineage import lineage as trace

    registry = open_registry_of(config)
    meta = registry.metadata(version)
    _, store = open_history_of(config)
    with store:
        document = trace(version, meta, store, is_production=registry.production_version() == version)
    if as_json:
        print_json(document)
        return
    training, model = document["training"], document["model"]
    out.print(f"model {version}{' (production)' if document['is_production'] else ''}: {model['candidate']}, "
              f"created {model['created_at']}", highlight=False)
    out.print(f"  trained by run {training['run_id']} ({training['status'] or 'not in the store'}) on "
              f"{training['rows']} rows, data fingerprint {training['data_fingerprint']}", highlight=False)
    out.print(f"  source: {training['source']}", highlight=False)
    for part in training.get("sources") or ():
        matched = "" if part.get("matched_rows") is None else f", {part['matched_rows']} base rows matched"
        out.print(f"    {part['name']}: {part['rows']} rows{matched}, fingerprint {part['fingerprint']} ({part['source']})",
                  highlight=False)
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


@log_app.command("compact")
@cli_errors
def log_compact(config: Path = ConfigOpt,
                older_than: str = typer.Option("1h", "--older-than", help="Merge the hours that closed at least this "
                                               "long ago (w d h min s)."),
                grace: str = typer.Option("1h", "--grace", help="Keep a replaced file this long before deleting it "
                                          "(a monitoring run may still be reading it)."),
                as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Merge each closed hour's small log files (one per write) into a few per model version: a window then
    reads in rows, not in per-file overheads. Rows, their order and their outcomes stay as they were. Safe
    while the service, the stream consumer and monitoring runs use the store; schedule it (cron, Airflow)."""
    from datetime import datetime, timezone

    from tabpipe.history.compaction import compact
    from tabpipe.sources.base import parse_duration

    durations = {}
    for option, text in (("--older-than", older_than), ("--grace", grace)):
        try:
            durations[option] = parse_duration(text)
        except ValueError as exc:
            err.print(f"[red]error:[/] {option}: {exc}", highlight=False)
            raise typer.Exit(2) from None
    _, store = open_history_of(config)
    with store:
        done = compact(store, now=datetime.now(timezone.utc), older_than=durations["--older-than"],
                       grace=durations["--grace"])
    if as_json:
        print_json(done.as_dict())
        return
    if store.log_dir is None:
        out.print(f"the history store {store.url} has no columnar log folder: nothing to compact", highlight=False)
        return
    out.print(f"merged {done.files_before} files of {done.groups} hour/version groups into {done.files_after} "
              f"({done.rows} rows); deleted {done.deleted} replaced files past their grace period and dead "
              "temporary files", highlight=False)
    if done.unindexed:
        out.print(f"{done.unindexed} Parquet files of {store.log_dir} are not in this store's index: left as they "
                  "are (a write that died before indexing, or another store's files)", highlight=False)
    for reason in done.skipped:
        out.print(f"[yellow]skipped:[/] {reason}", highlight=False)
