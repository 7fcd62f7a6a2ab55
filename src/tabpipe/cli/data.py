"""``tabpipe init``, ``tabpipe data generate`` and ``tabpipe data push-mongo``: getting data and a
project in place.

Exit codes: 0 done; 1 a data error (or files exist without ``--force``); 2 usage or configuration
(e.g. the MongoDB URI's environment variable is not set).
"""
from __future__ import annotations

from pathlib import Path

import typer

from tabpipe.cli.common import DEFAULT_KEYS_DIR, cli_errors, err, out

data_app = typer.Typer(help="Sample data and data loading helpers.", no_args_is_help=True)


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
