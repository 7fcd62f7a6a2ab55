"""TrainingPipeline: the whole training flow, one stage after another.

    ingestion -> validation (schema + drift) -> transformation -> trainer -> evaluation -> pusher

Each stage gets a config entity built from the YAML and the artifacts of the stages before it,
writes into its own folder of the run, and returns an artifact entity recorded in ``run.json``.
With ``sensitive: true`` columns in the schema, the rows the stages hand on stay in memory and the
run folder only gets protected copies (``tabpipe.training.rowfiles``); a resumed run then runs ingestion,
validation and transformation again and refuses to go on if the source's data changed meanwhile.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from tabpipe.training.components.evaluation import ModelEvaluation
from tabpipe.training.components.ingestion import DataIngestion
from tabpipe.training.components.pusher import ModelPusher
from tabpipe.training.components.trainer import ModelTrainer
from tabpipe.training.components.transformation import DataTransformation
from tabpipe.training.components.validation import DataValidation
from tabpipe.config import Settings
from tabpipe.training.specs import (
    EvaluationConfig,
    IngestionConfig,
    PusherConfig,
    TrainerConfig,
    TransformationConfig,
    ValidationConfig,
    restore_artifact,
)
from tabpipe.history.open import protector
from tabpipe.registry import ModelRegistry, open_registry
from tabpipe.training.rowfiles import RowFiles
from tabpipe.training.run import Run, RunFolderError, StopAfterStage, package_versions
from tabpipe.training.search.schedule import SearchProgress
from tabpipe.stages import STAGES


class TrainingPipeline:
    def __init__(self, settings: Settings, registry: ModelRegistry | None = None,
                 progress: SearchProgress | None = None, environ: Mapping[str, str] | None = None):
        """``registry``: the caller's (with its keys); by default one opened with the signing key from
        this process's environment or the configured key file (training publishes and promotes).
        ``progress``: shows the model search as it runs (e.g. a terminal progress bar).
        ``environ``: where the history store URL (when uploaded rows are included) and the key that hashes
        sensitive columns in the run folder are read (default os.environ)."""
        self.s = settings
        self.progress = progress
        self.environ = os.environ if environ is None else environ
        self.registry = registry or open_registry(settings.pipeline.registry, os.environ, sign=True,
                                                  config_file=settings.config_path)
        self.last_run: Run | None = None  # set as soon as a run folder exists, also when the run fails

    def run(self, *, run_name: str | None = None, until: str | None = None) -> Run:
        """Run every stage; returns the Run (``run.record`` is run.json). Re-raises a stage's error.

        ``run_name`` names the run folder and resumes it if it exists (stages that succeeded there are reused,
        not re-run); ``until`` stops after that stage (status ``partial``). Together they let an orchestrator
        run each stage as its own task and retry a failed stage alone.
        """
        s, p, schema, seed = self.s, self.s.pipeline, self.s.schema_, self.s.pipeline.run.seed
        run = self.last_run = Run(p.run.artifacts_dir, s.snapshot, name=run_name, restore=restore_artifact,
                                  stop_after=None if until == STAGES[-1] else until)
        rows = RowFiles(protector(s, self.environ))
        reuse = not rows.in_memory   # rows kept in memory only: a resumed run makes them again
        first = run.record.get("data_fingerprint") or run.record["stages"].get("ingestion", {}).get("artifact", {}).get(
            "fingerprint")   # what an earlier attempt in this folder read (folders from before the field: its artifact)
        try:
            ingestion = run.stage("ingestion", lambda out: self._same_data(run, first, DataIngestion(IngestionConfig(
                p.source, s.base_dir, schema.target.name, p.split.test_size, seed, out,
                self._uploaded_rows if p.includes_uploaded_rows else None, rows)).run()), reuse=reuse)
            validation = run.stage("validation", lambda out: DataValidation(ValidationConfig(
                schema, p.validation.on_invalid_rows, p.validation.drift, seed, out, rows), ingestion,
                self.registry).run(), reuse=reuse)
            transformation = run.stage("transformation", lambda out: DataTransformation(TransformationConfig(
                schema, p.transformation.max_categories, out, rows), validation).run(), reuse=reuse)
            trainer = run.stage("trainer", lambda out: ModelTrainer(TrainerConfig(
                schema, tuple(s.models.candidates), p.training.cv_folds, p.training.metric, p.training.time_budget_s,
                p.training.n_jobs, p.training.min_cv_score, p.transformation.resampling,
                p.transformation.max_categories, seed, out, p.training.executor, rows, p.training.search_rounds,
                p.training.ensemble_size), validation, transformation, self.progress).run())
            evaluation = run.stage("evaluation", lambda out: ModelEvaluation(EvaluationConfig(
                p.evaluation.metric, p.evaluation.min_score, p.evaluation.min_improvement, out, rows),
                validation, trainer, self.registry).run())
            pusher = run.stage("pusher", lambda out: ModelPusher(PusherConfig(
                schema, p.validation.drift.reference_rows, seed, run.id, {
                    "data_fingerprint": ingestion.fingerprint, "rows": ingestion.n_rows,
                    "schema": schema.model_dump(mode="json"), "package_versions": package_versions(),
                }, out, rows), evaluation, trainer, validation, self.registry).run())
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
    def _same_data(run: Run, first: str | None, ingestion):
        """``ingestion``, after checking that a resumed run reads the data its first attempt read (``first``)."""
        first = run.record["data_fingerprint"] = first or ingestion.fingerprint
        if first != ingestion.fingerprint:
            raise RunFolderError(f"the source's data changed since run folder {run.dir} was started (data "
                                 f"fingerprint {first[:12]}... then, {ingestion.fingerprint[:12]}... now); its "
                                 "finished stages belong to the old data: use a new run name")
        return ingestion

    def _uploaded_rows(self):
        """The rows uploaded with POST /data, read from the configured history store."""
        from tabpipe.history.open import open_history

        with open_history(self.s, self.environ) as store:
            return store.training_rows()
