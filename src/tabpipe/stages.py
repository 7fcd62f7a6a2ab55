"""The training flow's stage names, in order — the one list that the pipeline, the Airflow DAGs and the
generated flow chart share (this module imports nothing, so a DAG file can read it without scikit-learn).

``TrainingPipeline.run`` runs exactly these stages in this order; a test holds it to that.
"""
from __future__ import annotations

STAGES: tuple[str, ...] = ("ingestion", "validation", "transformation", "trainer", "evaluation", "pusher")

DESCRIPTIONS: dict[str, str] = {
    "ingestion": "read the source, snapshot it, stratified seeded train/test split, fingerprint",
    "validation": "schema rules (hard rules fail or drop, expectations are counted) + drift against production",
    "transformation": "fit imputation, scaling and encoding on the training split only",
    "trainer": "k-fold CV search within the time budget, resampling inside each fold, threshold on out-of-fold",
    "evaluation": "new and production model on the same untouched test split: the gate",
    "pusher": "publish the version (signed) and move production only if the gate passed",
}


def check_stage(name: str) -> str:
    """``name`` if it is a stage, else ValueError listing the stages."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; the stages are {', '.join(STAGES)}")
    return name
