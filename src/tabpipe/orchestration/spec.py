"""The three scheduled jobs of a tabpipe project as plain data: training, batch inference, monitoring.

A ``DagSpec`` lists tasks, each a tabpipe command line (run with the project's own tabpipe executable,
in its own virtual environment, so the scheduler's package pins never constrain tabpipe's), and the edges
between them. The training DAG has one task per pipeline stage (``tabpipe.stages.STAGES``) sharing one
named run folder, so a failed stage is retried alone. ``tabpipe.orchestration.airflow`` builds Airflow DAGs
from these specs and ``tabpipe flowchart`` draws them: neither holds any tabpipe logic of its own.

This module imports only pydantic, yaml and ``tabpipe.stages``, so it loads inside Airflow's environment.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from tabpipe.config_base import StrictModel
from tabpipe.stages import DESCRIPTIONS, STAGES

RUN_NAME = "{run_name}"       # replaced by the scheduler with a per-run folder name (Airflow: its run id)
RUN_TS = "{run_ts}"           # replaced by the scheduler with the run's timestamp, e.g. for output file names


class JobSection(StrictModel):
    """A scheduled job's settings: schedule, retries, retry delay, per-task timeout."""
    schedule: str | None = None          # cron expression or preset (@daily); None = only when triggered
    retries: int = Field(2, ge=0, le=20)
    retry_delay_s: float = Field(300, ge=0)
    timeout_s: float | None = Field(None, gt=0)   # per task; None = no limit


class TrainingJob(JobSection):
    """The training DAG's settings (weekly by default)."""
    schedule: str | None = "@weekly"


class InferenceJob(JobSection):
    """The batch inference DAG's settings: off unless enabled, the input to score, the output path."""
    schedule: str | None = "@daily"
    enabled: bool = False                # needs `input`
    input: Path | None = None            # CSV/Parquet file or partitioned Parquet folder to score
    output: str = "predictions/scored_{run_ts}.parquet"   # relative to the config's folder
    fail_on_unscorable_rows: bool = False  # tabpipe predict exits 1 when some rows could not be scored


class MonitoringJob(JobSection):
    """The monitoring DAG's settings: the log window to check and whether a retrain decision trains."""
    schedule: str | None = "@daily"
    since: str = "1d"                    # window of the prediction log
    retrain: bool = True                 # governance decision 'retrain' -> run the training pipeline (the gate decides)
    compact_log: bool = True             # first merge the closed hours' small log files (tabpipe log compact)


class OrchestrationSection(StrictModel):
    """``orchestration:`` in pipeline.yaml — schedules and retries of the scheduled jobs."""

    tabpipe_bin: str = "tabpipe"          # the tabpipe executable (of tabpipe's own virtualenv)
    dag_prefix: str = Field("tabpipe", pattern=r"^[A-Za-z0-9_.-]+$")
    training: TrainingJob = TrainingJob()
    inference: InferenceJob = InferenceJob()
    monitoring: MonitoringJob = MonitoringJob()


@dataclass(frozen=True)
class TaskSpec:
    """One task of a DAG: its id, command, description, accepted exit codes and kind (command, branch, no-op)."""
    task_id: str
    argv: tuple[str, ...]                # the command; RUN_NAME / RUN_TS placeholders filled per run
    doc: str
    ok_exit_codes: tuple[int, ...] = (0,)
    kind: Literal["command", "branch", "noop"] = "command"
    branches: dict[str, str] = field(default_factory=dict)   # branch tasks: decision -> task_id


@dataclass(frozen=True)
class DagSpec:
    """One DAG, independent of Airflow: id, description, schedule, job settings, tasks and edges."""
    dag_id: str
    doc: str
    schedule: str | None
    job: JobSection
    tasks: tuple[TaskSpec, ...]
    edges: tuple[tuple[str, str], ...]

    def command(self, task_id: str) -> str:
        """The task's command line as one shell-quoted string (placeholders left in)."""
        return shlex.join(next(t for t in self.tasks if t.task_id == task_id).argv)


def load_orchestration(config_path: str | Path) -> OrchestrationSection:
    """The ``orchestration`` section of ``pipeline.yaml`` (defaults when absent); only this key is read here,
    the whole file is validated by ``tabpipe.config`` when the tasks run."""
    raw = yaml.safe_load(Path(config_path).read_text()) or {}
    return OrchestrationSection.model_validate(raw.get("orchestration") or {})


def dag_specs(config_path: str | Path, section: OrchestrationSection | None = None) -> dict[str, DagSpec]:
    """The three DAG specs for the project whose pipeline.yaml is ``config_path`` (absolute path kept)."""
    config = str(Path(config_path).resolve())
    o = section or load_orchestration(config)
    tp = o.tabpipe_bin
    out: dict[str, DagSpec] = {}

    stage_tasks = tuple(
        TaskSpec(stage, (tp, "train", "--config", config, "--run-name", RUN_NAME, "--until", stage),
                 DESCRIPTIONS[stage])
        for stage in STAGES)
    out[f"{o.dag_prefix}_training"] = DagSpec(
        f"{o.dag_prefix}_training", "Training pipeline, one task per stage in one run folder; a failed stage "
        "is retried alone and reuses the stages before it.", o.training.schedule, o.training, stage_tasks,
        tuple(zip(STAGES, STAGES[1:])))

    if o.inference.enabled:
        if o.inference.input is None:
            raise ValueError("orchestration.inference.enabled needs orchestration.inference.input")
        base = Path(config).parent
        source = o.inference.input if o.inference.input.is_absolute() else base / o.inference.input
        output = o.inference.output if Path(o.inference.output).is_absolute() else str(base / o.inference.output)
        out[f"{o.dag_prefix}_inference"] = DagSpec(
            f"{o.dag_prefix}_inference", "Batch inference: score the input with the production model; every scored "
            "row goes to the prediction log (monitoring.log_predictions) and the output file.",
            o.inference.schedule, o.inference,
            (TaskSpec("predict", (tp, "predict", "--config", config, "--input", str(source), "--output", output),
                      "score the input rows (row order kept; unscorable rows get an error)",
                      ok_exit_codes=(0,) if o.inference.fail_on_unscorable_rows else (0, 1)),),
            ())

    monitor = TaskSpec("monitor", (tp, "monitor", "--config", config, "--since", o.monitoring.since, "--json"),
                       "drift (PSI vs the frozen profile), quality and performance of the window; decision "
                       "ok / watch / retrain", ok_exit_codes=(0, 3))
    tasks = [monitor]
    edges: list[tuple[str, str]] = []
    if o.monitoring.compact_log:
        tasks.insert(0, TaskSpec("compact_log", (tp, "log", "compact", "--config", config),
                                 "merge the closed hours' small prediction-log files (what monitoring reads is unchanged)"))
        edges.append(("compact_log", "monitor"))
    if o.monitoring.retrain:
        tasks += [
            TaskSpec("decide", (), "branch on the governance decision", kind="branch",
                     branches={"retrain": "retrain", "ok": "keep_model", "watch": "keep_model"}),
            TaskSpec("retrain", (tp, "train", "--config", config, "--run-name", RUN_NAME),
                     "retrain on the configured source; the evaluation gate decides whether it replaces production"),
            TaskSpec("keep_model", (), "no retraining needed", kind="noop"),
        ]
        edges += [("monitor", "decide"), ("decide", "retrain"), ("decide", "keep_model")]
    out[f"{o.dag_prefix}_monitoring"] = DagSpec(
        f"{o.dag_prefix}_monitoring", "Monitoring of the prediction log; its governance branch retrains.",
        o.monitoring.schedule, o.monitoring, tuple(tasks), tuple(edges))
    return out
