"""Benchmarks of tabpipe against the usual tools, run with ``python -m benchmarks`` (see __main__.py)."""
