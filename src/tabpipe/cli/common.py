"""What every command group shares: the consoles, ``--config``, the error-to-exit-code decorator, and
opening the registry or the history store from this process's environment (the CLI is the edge that
reads ``os.environ``; everything below it receives the mapping).
"""
from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler

from tabpipe.errors import ConfigError, TabpipeError

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


def warn(message: str) -> None:
    """One yellow warning line on stderr (the workflows' ``warn`` callback)."""
    err.print(f"[yellow]warning:[/] {message}", highlight=False)


def log_to_console(level: int = logging.INFO) -> None:
    """Show the ``tabpipe`` logger's records on stderr (once per process)."""
    logger = logging.getLogger("tabpipe")
    logger.setLevel(level)
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.addHandler(RichHandler(console=err, show_path=False, markup=False))


def open_registry_of(config: Path, *, sign: bool = False):
    """The registry of ``config``, keys and cache folder from this process's environment.

    ``sign``: also load the private key (publishing, promoting); readers get the public key only.
    """
    import os

    from tabpipe.config import load_settings
    from tabpipe.registry import open_registry

    settings = load_settings(config, check_candidates=False)
    return open_registry(settings.pipeline.registry, os.environ, sign=sign, config_file=settings.config_path)


def open_history_of(config: Path):
    """(settings, history store) of ``config``, the store's URL from this process's environment."""
    import os

    from tabpipe.config import load_settings
    from tabpipe.history.open import open_history

    settings = load_settings(config, check_candidates=False)
    return settings, open_history(settings, os.environ)


def print_json(document) -> None:
    """``document`` as indented JSON on stdout (values JSON lacks as their ``str``)."""
    import json

    print(json.dumps(document, indent=2, default=str))
