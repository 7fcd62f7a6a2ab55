"""The ``tabpipe`` command line: one module per command group, registered here in the order ``--help`` lists.

Exit codes: 0 done; 1 a stage or the data failed (message printed, details in the run folder);
2 usage or configuration error (one line naming the file and key); ``monitor`` also: 3 the
decision is ``retrain`` (and ``--retrain`` was not given).
"""
from __future__ import annotations

import typer

from tabpipe.cli.data import data_app, init
from tabpipe.cli.history import lineage, log_app, runs_app
from tabpipe.cli.models import keys_app, models_app
from tabpipe.cli.monitor import monitor, outcomes
from tabpipe.cli.predict import predict
from tabpipe.cli.serve import flowchart, serve
from tabpipe.cli.stream import stream
from tabpipe.cli.train import train

app = typer.Typer(help="Train, gate, version and serve tabular classifiers from YAML.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
for command in (train, predict, init, serve, stream, flowchart, monitor, outcomes, lineage):
    app.command()(command)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(runs_app, name="runs")
app.add_typer(log_app, name="log")


def main() -> None:
    """The ``tabpipe`` console script."""
    from tabpipe.edge import prepare_process

    prepare_process()
    app()
