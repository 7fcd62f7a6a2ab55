"""Gunicorn configuration (``gunicorn -c gunicorn.conf.py app:app``): the settings shipped in the package."""
from tabpipe.serving.gunicorn_conf import *  # noqa: F403
