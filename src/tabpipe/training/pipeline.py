"""TrainingPipeline: the whole training flow, one stage after another.

    ingestion -> validation (schema + integrity + drift) -> transformation -> trainer -> evaluation -> pusher

Each stage gets a spec built from the validated YAML (``from_settings``) and the artifacts of the stages before it,
writes into its own folder of the run, and returns an artifact entity recorded in ``run.json``.
With ``sensitive: true`` columns in the schema, the rows the stages hand on stay in memory and the
run folder only gets protected copies (``tabpipe.training.rowfiles``); a resumed run then runs ingestion,
validation and transformation again and refuses to go on if the source's data changed meanwhile.
"""
from __future__ import annotations

from collections.abc import Mapping

from tabpipe.config import Settings
from tabpipe.history.open import protector
from tabpipe.registry import ModelRegistry, open_registry
from tabpipe.stages import STAGES
from tabpipe.training.components.evaluation import ModelEvaluation
from tabpipe.training.components.ingestion import DataIngestion
from tabpipe.training.components.pusher import ModelPusher
from tabpipe.training.components.trainer import ModelTrainer
from tabpipe.training.components.transformation import DataTransformation
from tabpipe.training.components.validation import DataValidation
from tabpipe.training.rowfiles import RowFiles
from tabpipe.training.run import Run, RunFolderError, StopAfterStage, package_versions
from tabpipe.training.search.progress import SearchProgress
from tabpipe.training.specs import (
    EvaluationConfig,
    IngestionConfig,
    PusherConfig,
    TrainerConfig,
    TransformationConfig,
    ValidationConfig,
    restore_artifact,
)


class TrainingPipeline:
    """The six stages of one training run, each built from the settings, in one run folder."""

    def __init__(self, settings: Settings, registry: ModelRegistry | None = None,
                 progress: SearchProgress | None = None, *, environ: Mapping[str, str]):
        """``environ``: the environment the edge (CLI, app factory, Airflow task) read, where the source's
        URL, the history store URL (when uploaded rows are included), the key that hashes sensitive
        columns in the run folder and, without ``registry``, the registry's signing key are looked up.
        ``registry``: the caller's (with its keys); by default one opened from ``environ`` or the
        configured key file (training publishes and promotes).
        ``progress``: shows the model search as it runs (e.g. a terminal progress bar)."""
        self.settings = settings
        self.progress = progress
        self.environ = environ
        self.registry = registry or open_registry(settings.pipeline.registry, environ, sign=True,
                                                  config_file=settings.config_path)
        self.last_run: Run | None = None  # set as soon as a run folder exists, also when the run fails

    def run(self, *, run_name: str | None = None, until: str | None = None) -> Run:
        """Run every stage; returns the Run (``run.record`` is run.json). Re-raises a stage's error.

        ``run_name`` names the run folder and resumes it if it exists (stages that succeeded there are reused,
        not re-run); ``until`` stops after that stage (status ``partial``). Together they let an orchestrator
        run each stage as its own task and retry a failed stage alone.
        """
        settings, registry = self.settings, self.registry
        run = self.last_run = Run(settings.pipeline.run.artifacts_dir, settings.snapshot, name=run_name,
                                  restore=restore_artifact, stop_after=None if until == STAGES[-1] else until)
        with run.logging_to_folder():
            rows = RowFiles(protector(settings, self.environ))
            reuse = not rows.in_memory   # rows kept in memory only: a resumed run makes them again
            first = self._first_fingerprint(run)
            try:
                ingestion = run.stage("ingestion", lambda out: self._same_data(run, first, DataIngestion(
                    IngestionConfig.from_settings(settings, out_dir=out, rows=rows, environ=self.environ,
                                                  uploaded_rows=self._uploaded_rows)).run()), reuse=reuse)
                validation = run.stage("validation", lambda out: DataValidation(
                    ValidationConfig.from_settings(settings, out_dir=out, rows=rows), ingestion, registry).run(),
                    reuse=reuse)
                transformation = run.stage("transformation", lambda out: DataTransformation(
                    TransformationConfig.from_settings(settings, out_dir=out, rows=rows), validation).run(),
                    reuse=reuse)
                trainer = run.stage("trainer", lambda out: ModelTrainer(
                    TrainerConfig.from_settings(settings, out_dir=out, rows=rows), validation, transformation,
                    self.progress).run())
                evaluation = run.stage("evaluation", lambda out: ModelEvaluation(
                    EvaluationConfig.from_settings(settings, out_dir=out, rows=rows), validation, trainer,
                    registry).run())
                pusher = run.stage("pusher", lambda out: ModelPusher(
                    PusherConfig.from_settings(settings, out_dir=out, rows=rows, run_id=run.id, ingestion=ingestion,
                                               package_versions=package_versions()),
                    evaluation, trainer, validation, registry).run())
            except StopAfterStage:
                run.pause()
                return run
            except BaseException as exc:
                run.finish(error=exc)
                raise
            run.finish(metrics=evaluation.metrics, accepted=evaluation.accepted, decision=evaluation.reason,
                       model_version=pusher.version, promoted=pusher.promoted, push=pusher.reason)
        return run

    @staticmethod
    def _first_fingerprint(run: Run) -> str | None:
        """The data fingerprint an earlier attempt in this run folder read (older folders: in its artifact)."""
        return run.record.get("data_fingerprint") or run.record["stages"].get("ingestion", {}).get(
            "artifact", {}).get("fingerprint")

    @staticmethod
    def _same_data(run: Run, first: str | None, ingestion):
        """``ingestion``, after checking that a resumed run reads the data its first attempt read (``first``):
        for a joined source, each part first (the message names the parts that changed), then the table."""
        now = {part["name"]: part["fingerprint"] for part in ingestion.sources}
        then = run.record.setdefault("source_fingerprints", now) if now else {}
        changed = [name for name in sorted(set(then) | set(now)) if then.get(name) != now.get(name)]
        if changed:
            shown = ", ".join(f"{name} ({(then.get(name) or 'absent')[:12]}... then, {(now.get(name) or 'absent')[:12]}"
                              f"... now)" for name in changed)
            raise RunFolderError(f"source part(s) changed since run folder {run.dir} was started: {shown}; its "
                                 "finished stages belong to the old data: use a new run name")
        first = run.record["data_fingerprint"] = first or ingestion.fingerprint
        if first != ingestion.fingerprint:
            raise RunFolderError(f"the source's data changed since run folder {run.dir} was started (data "
                                 f"fingerprint {first[:12]}... then, {ingestion.fingerprint[:12]}... now); its "
                                 "finished stages belong to the old data: use a new run name")
        return ingestion

    def _uploaded_rows(self):
        """The rows uploaded with POST /data, read from the configured history store."""
        from tabpipe.history.open import open_history

        with open_history(self.settings, self.environ) as store:
            return store.training_rows()
