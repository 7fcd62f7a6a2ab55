"""TrainingPipeline: the whole training flow, one stage after another.

    ingestion -> validation (schema + drift) -> transformation -> trainer -> evaluation -> pusher

Each stage gets a config entity built from the YAML and the artifacts of the stages before it,
writes into its own folder of the run, and returns an artifact entity recorded in ``run.json``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from tabpipe.components.evaluation import ModelEvaluation
from tabpipe.components.ingestion import DataIngestion
from tabpipe.components.pusher import ModelPusher
from tabpipe.components.trainer import ModelTrainer
from tabpipe.components.transformation import DataTransformation
from tabpipe.components.validation import DataValidation
from tabpipe.config import Settings
from tabpipe.entities import (
    EvaluationConfig,
    IngestionConfig,
    PusherConfig,
    TrainerConfig,
    TransformationConfig,
    ValidationConfig,
)
from tabpipe.registry import ModelRegistry
from tabpipe.run import Run, package_versions


class TrainingPipeline:
    def __init__(self, settings: Settings, registry: ModelRegistry | None = None,
                 environ: Mapping[str, str] | None = None):
        self.s = settings
        self.environ = os.environ if environ is None else environ   # the history store URL (uploaded rows)
        self.registry = registry or ModelRegistry.from_config(settings.pipeline.registry)
        self.last_run: Run | None = None  # set as soon as a run folder exists, also when the run fails

    def run(self) -> Run:
        """Run every stage; returns the Run (``run.record`` is run.json). Re-raises a stage's error."""
        s, p, schema, seed = self.s, self.s.pipeline, self.s.schema_, self.s.pipeline.run.seed
        run = self.last_run = Run(p.run.artifacts_dir, s.snapshot)
        try:
            ingestion = run.stage("ingestion", lambda out: DataIngestion(IngestionConfig(
                p.source, s.base_dir, schema.target.name, p.split.test_size, seed, out,
                self._uploaded_rows if p.includes_uploaded_rows else None)).run())
            validation = run.stage("validation", lambda out: DataValidation(ValidationConfig(
                schema, p.validation.on_invalid_rows, p.validation.drift, seed, out), ingestion, self.registry).run())
            transformation = run.stage("transformation", lambda out: DataTransformation(TransformationConfig(
                schema, p.transformation.max_categories, out), validation).run())
            trainer = run.stage("trainer", lambda out: ModelTrainer(TrainerConfig(
                schema, tuple(s.models.candidates), p.training.cv_folds, p.training.metric, p.training.time_budget_s,
                p.training.n_jobs, p.training.min_cv_score, p.transformation.resampling,
                p.transformation.max_categories, seed, out), validation, transformation).run())
            evaluation = run.stage("evaluation", lambda out: ModelEvaluation(EvaluationConfig(
                p.evaluation.metric, p.evaluation.min_score, p.evaluation.min_improvement, out),
                validation, trainer, self.registry).run())
            pusher = run.stage("pusher", lambda out: ModelPusher(PusherConfig(
                p.validation.drift.reference_rows, seed, run.id, {
                    "data_fingerprint": ingestion.fingerprint, "rows": ingestion.n_rows,
                    "schema": schema.model_dump(mode="json"), "package_versions": package_versions(),
                }, out), evaluation, trainer, validation, self.registry).run())
        except BaseException as exc:
            run.finish(error=exc)
            raise
        run.finish(metrics=evaluation.metrics, accepted=evaluation.accepted, decision=evaluation.reason,
                   model_version=pusher.version)
        return run

    def _uploaded_rows(self):
        """The rows uploaded with POST /data, read from the configured history store."""
        from tabpipe.monitoring.edge import open_history

        with open_history(self.s, self.environ) as store:
            return store.training_rows()
