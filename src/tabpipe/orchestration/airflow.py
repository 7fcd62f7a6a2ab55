"""Airflow DAGs built from a tabpipe config: ``build_dags()`` in a DAG file is all a deployment needs.

    # dags/tabpipe_dags.py (in Airflow's dags folder)
    from tabpipe.orchestration.airflow import build_dags
    globals().update(build_dags())

The config path comes from the Airflow Variable ``tabpipe_config`` (else ``$TABPIPE_CONFIG``); the
Variable ``tabpipe_bin`` overrides ``orchestration.tabpipe_bin``. Schedules and retries come from the
``orchestration`` section of pipeline.yaml (``tabpipe.orchestration.spec``). Every task runs a tabpipe
command in tabpipe's own virtualenv, so Airflow's pins never constrain tabpipe's and no tabpipe logic
lives in the DAGs. Needs Airflow 3 (``airflow.sdk``) and the standard provider (bundled with Airflow 3).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
from airflow.sdk import DAG, Variable

from tabpipe.orchestration.spec import RUN_NAME, RUN_TS, DagSpec, TaskSpec, dag_specs, load_orchestration

# Airflow run ids look like manual__2026-11-30T10:55:32.835462+00:00: safe folder names replace the rest
RUN_NAME_JINJA = "{{ run_id | replace(':', '-') | replace('+', '_') }}"
RUN_TS_JINJA = "{{ ts_nodash if ts_nodash else run_id | replace(':', '-') | replace('+', '_') }}"
START = pendulum.datetime(2026, 1, 1, tz="UTC")


def _config_path() -> str:
    path = Variable.get("tabpipe_config", default=None) or os.environ.get("TABPIPE_CONFIG")
    if not path:
        raise RuntimeError("set the Airflow Variable tabpipe_config (or $TABPIPE_CONFIG) to the project's pipeline.yaml")
    return path


def _templated(argv: tuple[str, ...]) -> str:
    command = shlex.join(argv)
    return command.replace(RUN_NAME, RUN_NAME_JINJA).replace(RUN_TS, RUN_TS_JINJA)


def _bash(task: TaskSpec) -> BashOperator:
    command = _templated(task.argv)
    if task.ok_exit_codes != (0,):  # e.g. predict's "some rows could not be scored" (exit 1) is not a failure
        allowed = " ".join(str(c) for c in task.ok_exit_codes)
        command = f"{command}; rc=$?; for ok in {allowed}; do [ $rc -eq $ok ] && exit 0; done; exit $rc"
    return BashOperator(task_id=task.task_id, bash_command=command, doc=task.doc, do_xcom_push=False)


def run_json_command(argv: list[str], ok_exit_codes: list[int]) -> dict:
    """Run a tabpipe command that prints one JSON document (``--json``); return it (pushed as the XCom)."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603 — argv from config
    if proc.stderr:
        print(proc.stderr[-20_000:])
    if proc.returncode not in ok_exit_codes:
        raise RuntimeError(f"{shlex.join(argv[:2])} exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


def _json_task(task: TaskSpec) -> PythonOperator:
    return PythonOperator(task_id=task.task_id, python_callable=run_json_command, doc=task.doc,
                          op_kwargs={"argv": list(task.argv), "ok_exit_codes": list(task.ok_exit_codes)})


def choose_branch(decision_of: str, branches: dict[str, str], ti) -> str:
    """The task id to follow for the decision found in the upstream task's JSON result."""
    result = ti.xcom_pull(task_ids=decision_of) or {}
    decision = result.get("decision")
    if decision not in branches:
        raise RuntimeError(f"task {decision_of} returned decision {decision!r}; expected one of {sorted(branches)}")
    return branches[decision]


def build_dag(spec: DagSpec) -> DAG:
    """One Airflow DAG from a spec."""
    job = spec.job
    default_args = {"retries": job.retries, "retry_delay": timedelta(seconds=job.retry_delay_s)}
    if job.timeout_s:
        default_args["execution_timeout"] = timedelta(seconds=job.timeout_s)
    with DAG(spec.dag_id, schedule=spec.schedule, start_date=START, catchup=False, max_active_runs=1,
             default_args=default_args, doc_md=spec.doc, tags=["tabpipe"]) as dag:
        ops = {}
        upstream = {dst: src for src, dst in spec.edges}
        for task in spec.tasks:
            if task.kind == "noop":
                ops[task.task_id] = EmptyOperator(task_id=task.task_id, doc=task.doc)
            elif task.kind == "branch":
                ops[task.task_id] = BranchPythonOperator(
                    task_id=task.task_id, python_callable=choose_branch, doc=task.doc,
                    op_kwargs={"decision_of": upstream[task.task_id], "branches": task.branches})
            elif "--json" in task.argv:
                ops[task.task_id] = _json_task(task)
            else:
                ops[task.task_id] = _bash(task)
        for src, dst in spec.edges:
            ops[src] >> ops[dst]
    return dag


def build_dags(config_path: str | None = None) -> dict[str, DAG]:
    """Every DAG of the project, keyed by dag id (put them in the DAG file's globals)."""
    path = config_path or _config_path()
    section = load_orchestration(path)
    override = Variable.get("tabpipe_bin", default=None)
    if override:
        section = section.model_copy(update={"tabpipe_bin": override})
    return {dag_id: build_dag(spec) for dag_id, spec in dag_specs(path, section).items()}


__all__ = ["build_dag", "build_dags", "choose_branch", "run_json_command", "RUN_NAME_JINJA"]
