"""WSGI entry point for gunicorn (``gunicorn -c gunicorn.conf.py app:app``).

The config comes from ``$TABPIPE_CONFIG`` (default ``config/pipeline.yaml``); ``tabpipe serve`` is the
usual way to start it.
"""
from tabpipe.serving.app import create_app

app = create_app()
