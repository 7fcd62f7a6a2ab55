"""``tabpipe serve`` and ``tabpipe flowchart``: the HTTP service, and the flow chart of stages and DAGs.

Exit codes: 0 done; 1 a registry error; 2 usage or configuration (checked before the server starts).
"""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from tabpipe.cli.common import ConfigOpt, cli_errors, out


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
    from importlib.util import find_spec

    gunicorn_conf = find_spec("tabpipe.serving.gunicorn_conf").origin   # gunicorn runs it (metrics folder, logs)
    argv = [sys.executable, "-m", "gunicorn", "--config", gunicorn_conf, "--bind", f"{host}:{port}",
            "tabpipe.serving.app:create_app()"]
    # bandit B606: a fixed argv run by this very interpreter, no shell involved
    os.execv(sys.executable, argv)  # nosec B606


@cli_errors
def flowchart(
    config: Path = ConfigOpt,
    out_dir: Path = typer.Option(Path("Flow_Chart"), "--out", help="Folder for the .mmd, .svg and .md files."),
) -> None:
    """Write the flow chart (Mermaid + SVG) generated from the pipeline's stages and the scheduled DAGs."""
    from tabpipe.orchestration.flowchart import write

    for path in write(out_dir, config):
        out.print(f"wrote {path}")
