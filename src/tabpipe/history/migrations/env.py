"""Alembic environment for the history store.

``tabpipe.history.store.migrate`` passes an open connection (inside the transaction that holds
the migration lock) in ``config.attributes["connection"]``. For developers writing a new revision,
``alembic -x url=sqlite:///scratch.sqlite revision --autogenerate -m ...`` (run with
``script_location`` pointing here) connects to the given URL instead.
"""
from alembic import context
from sqlalchemy import create_engine

from tabpipe.history.store import METADATA

connection = context.config.attributes.get("connection")


def _run(conn) -> None:
    context.configure(connection=conn, target_metadata=METADATA, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as conn:
        _run(conn)
