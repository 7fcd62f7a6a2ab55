"""WSGI entry point for gunicorn (``gunicorn -c gunicorn.conf.py app:app``).

The config comes from ``$TABPIPE_CONFIG`` (default ``config/pipeline.yaml``); ``tabpipe serve`` is the
usual way to start it.
"""
from tabpipe.edge import prepare_process

prepare_process()

from tabpipe.serving.app import create_app  # noqa: E402

app = create_app()
