"""DataValidation: check both splits against the schema, then compare the data with the reference.

Hard rules (missing column, a value that cannot be read as its type, target not binary, and the
range/category/null rules a column lists under ``hard:``) fail the run with a readable summary — or,
with ``on_invalid_rows: drop``, offending rows are dropped and counted (a missing column or a bad
target still fails). Broken expectations (inferred ranges, category lists, ``nullable: false``) keep
their rows and are counted per column and rule in the report and in the artifact (``run.json``).
Then the integrity checks (``tabpipe.training.integrity``): repeated rows are counted and a feature
row's copies kept on one side of the split; a feature that alone ranks the target almost perfectly
on the training rows fails the run, naming it. Drift needs a reference: the training sample stored
with the production model.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd

from tabpipe.drift.rules import drift_report
from tabpipe.training.integrity import check_integrity, leak_message
from tabpipe.training.specs import IngestionArtifact, ValidationArtifact, ValidationConfig
from tabpipe.errors import DataError
from tabpipe.schema import Problem, coerce_frame, problem_rows, problems_report, summarize, warning_counts

log = logging.getLogger(__name__)
FRAME_RULES = {"missing_column", "classes"}
NO_REFERENCE = "first run: no production model in the registry, so there is no reference data; drift was not computed"


def _source_rows(df: pd.DataFrame, typed: pd.DataFrame, problems: list[Problem]) -> tuple[pd.DataFrame, list[Problem]]:
    """Problems with row positions of the split turned into row numbers of the ingested data (the index)."""
    index = df.index.to_numpy()
    return typed, [replace(p, rows=tuple(int(index[r]) for r in p.rows)) for p in problems]


def _merge_counts(*counts: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    merged: dict[str, dict[str, int]] = {}
    for per_column in counts:
        for column, rules in per_column.items():
            for rule, n in rules.items():
                merged.setdefault(column, {})[rule] = merged.get(column, {}).get(rule, 0) + n
    return merged


def _integrity_counts(section: dict) -> dict[str, int]:
    """The repeated-row counts of the report's ``integrity`` section, flat (for run.json); checks that are off are left out."""
    counts = {"duplicate_rows": section["duplicate_rows"].get("rows"),
              "conflicting_label_rows": section["conflicting_labels"].get("rows"),
              "across_split_train_rows": section["across_split"].get("train_rows"),
              "across_split_test_rows": section["across_split"].get("test_rows"),
              "moved_to_train": section["across_split"].get("moved_to_train"),
              "moved_to_test": section["across_split"].get("moved_to_test")}
    return {name: n for name, n in counts.items() if n is not None}


class DataValidation:
    """Schema rules (hard rules fail or drop, expectations are counted), integrity checks and drift against production."""
    def __init__(self, config: ValidationConfig, ingestion: IngestionArtifact, registry):
        self.config, self.ingestion, self.registry = config, ingestion, registry

    def _keep_valid(self, name: str, typed: pd.DataFrame, problems: list[Problem]) -> pd.DataFrame:
        """Typed rows that broke no hard rule; raises DataError when the policy or a frame-level rule says so."""
        hard = [p for p in problems if p.hard]
        fatal = [p for p in hard if p.rule in FRAME_RULES]
        if fatal or (hard and self.config.on_invalid_rows == "fail"):
            raise DataError(f"{name} data violates the schema:\n{summarize(fatal or hard)}\n"
                            f"(full report: {self.config.out_dir / 'validation_report.json'})")
        keep = ~typed.index.isin(list(problem_rows(problems, hard=True)))
        return typed[keep].reset_index(drop=True)

    def run(self) -> ValidationArtifact:
        """Check both splits, keep the valid rows, run the integrity checks, check drift, and write
        validation_report.json."""
        cfg = self.config
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        frames = {"train": cfg.rows.read_frame(self.ingestion.train_path), "test": cfg.rows.read_frame(self.ingestion.test_path)}
        checked = {name: _source_rows(df, *coerce_frame(df, cfg.schema, with_target=True)) for name, df in frames.items()}
        report: dict = {"row_numbers": "0-based rows of the ingested data (01_ingestion/raw.parquet)",
                        "schema_checks": {n: problems_report(p, len(frames[n])) for n, (_, p) in checked.items()}}
        (cfg.out_dir / "validation_report.json").write_text(json.dumps(report, indent=2, default=str))
        typed = {name: self._keep_valid(name, df, problems) for name, (df, problems) in checked.items()}
        dropped = sum(len(frames[n]) - len(typed[n]) for n in frames)
        if dropped:
            log.warning("dropped %d rows that violate the schema (see validation_report.json)", dropped)
        warned = _merge_counts(*(warning_counts(p) for _, p in checked.values()))
        rows_warned = sum(report["schema_checks"][n]["rows_with_warnings"] for n in frames)
        if warned:
            log.warning("%d rows break expectations of the schema (kept): %s", rows_warned,
                        "; ".join(f"{c}: {', '.join(f'{r} {k}' for r, k in rules.items())}" for c, rules in warned.items()))
        integrity = check_integrity(typed["train"], typed["test"], cfg.schema, cfg.integrity, cfg.seed)
        typed = {"train": integrity.train, "test": integrity.test}
        report["integrity"] = integrity.report
        (cfg.out_dir / "validation_report.json").write_text(json.dumps(report, indent=2, default=str))
        if integrity.leaks:
            raise DataError(leak_message(integrity.leaks, cfg.integrity) +
                            f" (full report: {cfg.out_dir / 'validation_report.json'})")
        drift = self._drift(pd.concat([typed["train"], typed["test"]], ignore_index=True))
        report["drift"] = drift
        (cfg.out_dir / "validation_report.json").write_text(json.dumps(report, indent=2, default=str))
        if drift["status"] == "drift":
            message = f"data drift: {drift['drift_share']:.0%} of columns drifted ({', '.join(drift['drifted_columns'])})"
            if cfg.drift.fail_on_drift:
                raise DataError(message + "; validation.drift.fail_on_drift is true")
            log.warning(message)
        paths = {n: cfg.out_dir / f"{n}.parquet" for n in typed}
        for n, df in typed.items():
            cfg.rows.write_frame(df, paths[n])
        return ValidationArtifact(
            report_path=cfg.out_dir / "validation_report.json",
            train_path=paths["train"], test_path=paths["test"],
            n_train=len(typed["train"]), n_test=len(typed["test"]), rows_dropped=dropped,
            rows_with_warnings=rows_warned, warning_counts=warned, integrity_counts=_integrity_counts(report["integrity"]),
            drift_status=drift["status"], drift_share=drift.get("drift_share"),
            drift_html=Path(drift["html"]) if "html" in drift else None,
            drift_json=Path(drift["json"]) if "json" in drift else None,
        )

    def _drift(self, current: pd.DataFrame) -> dict:
        cfg = self.config
        if not cfg.drift.enabled:
            return {"status": "disabled", "message": "validation.drift.enabled is false"}
        version = self.registry.production_version()
        if version is None:
            return {"status": "no_reference", "message": NO_REFERENCE}
        reference = pd.read_parquet(self.registry.fetch(version, "reference.parquet"))
        summary = drift_report(reference, current[[c for c in current.columns if c != cfg.schema.target.name]],
                               cfg.out_dir, drift_share=cfg.drift.drift_share, max_rows=cfg.drift.max_rows,
                               seed=cfg.seed, sensitive=cfg.schema.sensitive)
        return {"reference_version": version, **summary}
