"""``tabpipe monitor`` and ``tabpipe outcomes``: options in, ``tabpipe.monitoring`` does the work, the
result printed (or one JSON document) and mapped to an exit code.

Exit codes: 0 done (monitor: ok or watch, or ``--retrain`` ran to completion); 1 an error (or the
retraining run failed); 2 usage or configuration; 3 monitor decided ``retrain`` without ``--retrain``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from tabpipe.cli.common import ConfigOpt, cli_errors, err, log_to_console, open_history_of, out, print_json, warn
from tabpipe.errors import TabpipeError

EXIT_RETRAIN = 3


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
    report: bool = typer.Option(False, "--report", help="With --since: also write evidently's HTML drift report "
                                "(slow; the drift verdicts never need it). --input always writes it."),
) -> None:
    """Check a window of predictions (drift, quality, performance), decide ok / watch / retrain, alert, report.

    Exit codes: 0 ok or watch (or --retrain ran to completion, accepted or not); 3 retrain decided
    (without --retrain); 1 an error (or the retraining run failed); 2 usage or configuration error.
    """
    import contextlib
    import json
    import os
    from datetime import datetime, timezone

    from tabpipe.config import load_settings
    from tabpipe.monitoring.job import run_monitoring
    from tabpipe.monitoring.monitor import parse_since

    if (since is None) == (input is None):
        raise typer.BadParameter("give exactly one of --since (the prediction log) or --input FILE")
    if labels is not None and input is None:
        raise typer.BadParameter("--labels names a column of --input")
    if until is not None and since is None:
        raise typer.BadParameter("--until needs --since")
    if append_labelled and not retrain:
        raise typer.BadParameter("--append-labelled only applies with --retrain")
    settings = load_settings(config, check_candidates=retrain)
    log_to_console()
    now = datetime.now(timezone.utc)
    try:
        start = parse_since(since, now) if since else None
        end = parse_since(until, now) if until else now
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        result = run_monitoring(settings, environ=os.environ, now=now, since=start, until=end, input=input,
                                labels=labels, model_version=model_version, retrain=retrain,
                                append_labelled=append_labelled, report=report, warn=warn)
    if as_json:
        print(json.dumps(result, allow_nan=False))
    else:
        _print_monitoring(result)
    if result.get("retrain", {}).get("status") == "failed":
        raise typer.Exit(1)
    if result["decision"] == "retrain" and "retrain" not in result:
        raise typer.Exit(EXIT_RETRAIN)


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
    settings, store = open_history_of(config)
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
        print_json(asdict(result))
        return
    out.print(f"{result.labels} labelled ids ({result.skipped} rows without id or label skipped): "
              f"{result.matched} logged predictions labelled, {result.unmatched_ids} ids not found in the log")
    for window in result.windows:
        m = window["metrics"]
        auc = "n/a (one class)" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}"
        out.print(f"{window['version']} {window['window_start'][:19]} .. {window['window_end'][:19]}: {window['rows']} rows, "
                  f"roc_auc={auc} precision={m['precision']:.4f} recall={m['recall']:.4f} f1={m['f1']:.4f}")
