"""Airflow DAG file for tabpipe: mount or copy into Airflow's dags folder.

Set the Airflow Variable ``tabpipe_config`` (or the environment variable TABPIPE_CONFIG) to the project's
pipeline.yaml, and ``tabpipe_bin`` to tabpipe's executable if it is not on PATH. The DAGs — training (one
task per stage), batch inference and monitoring (with its retrain branch) — are built by tabpipe from that
config; see ``tabpipe.orchestration``.
"""
from tabpipe.orchestration.airflow import build_dags

globals().update(build_dags())
