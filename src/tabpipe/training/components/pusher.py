"""ModelPusher: publish a blessed model to the registry and make it production; nothing otherwise.

Design notes: docs/training.md#publishing-and-promotion-pusher
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from tabpipe.training.specs import (
    EvaluationArtifact,
    PusherArtifact,
    PusherConfig,
    TrainerArtifact,
    ValidationArtifact,
)
from tabpipe.training.card import build_card, write_card
from tabpipe.training.holdout import TRAIN_ROWS_FILE, write_train_rows
from tabpipe.reports.dashboard import write_training_report
from tabpipe.drift.profile import write_profile_for_run
from tabpipe.registry import PromotionConflict

log = logging.getLogger(__name__)


class ModelPusher:
    """Publish the version (signed) and move production only if the gate passed."""
    def __init__(self, config: PusherConfig, evaluation: EvaluationArtifact, trainer: TrainerArtifact,
                 validation: ValidationArtifact, registry):
        self.config, self.evaluation, self.trainer, self.validation = config, evaluation, trainer, validation
        self.registry = registry

    def run(self) -> PusherArtifact:
        """Publish, promote when accepted, and say what was done."""
        cfg, ev = self.config, self.evaluation
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        # before publishing: a report that cannot be drawn fails the stage without a half-finished publish
        write_training_report(cfg.out_dir, validation=self.validation, trainer=self.trainer, evaluation=ev, rows=cfg.rows)
        if not ev.accepted:
            result = PusherArtifact(pushed=False, version=None, reason=f"not blessed: {ev.reason}")
        else:
            train = cfg.rows.read_frame(self.validation.train_path)
            reference = train.sample(n=min(cfg.reference_rows, len(train)), random_state=cfg.seed)
            reference = reference.drop(columns=[c for c in reference.columns if c in cfg.schema.sensitive])
            ref_path = cfg.out_dir / "reference.parquet"
            reference.to_parquet(ref_path, index=False)
            train_rows = write_train_rows(train, cfg.schema, cfg.out_dir / TRAIN_ROWS_FILE)
            profile_path = write_profile_for_run(self.validation, self.trainer.model_path, cfg.out_dir / "profile.json",
                                                 cfg.rows, multivariate=cfg.multivariate)
            metadata = {
                "run_id": cfg.run_id,
                "metrics": dict(ev.metrics),
                "candidate": self.trainer.best_candidate,
                "params": dict(self.trainer.best_params),
                "resampling": self.trainer.best_resampling,
                "cv_score": self.trainer.cv_score,
                "threshold": self.trainer.threshold,
                "calibration": self.trainer.calibration,   # the map (or why none) and its out-of-fold ECE/Brier
                "train_rows": train_rows,
                "blessing": {"reason": ev.reason, "production_version": ev.production_version},
                **cfg.extra_metadata,
            }
            blessing = json.loads(ev.blessing_path.read_text())
            if (blessing.get("segments") or {}).get("columns"):   # how `tabpipe monitor` cuts the same segments
                metadata["segments"] = blessing["segments"]["columns"]
            version = self.registry.publish({"model.pkl": self.trainer.model_path, "reference.parquet": ref_path,
                                             "profile.json": profile_path,
                                             TRAIN_ROWS_FILE: cfg.out_dir / TRAIN_ROWS_FILE}, metadata,
                                            named=lambda v: self._card(v, blessing))
            try:  # only if production is still the version the evaluation beat (compare-and-swap)
                self.registry.promote(version, expected=ev.production_version)
            except PromotionConflict as exc:
                log.warning("%s published but not promoted: %s", version, exc)
                result = PusherArtifact(pushed=True, version=version, promoted=False,
                                        reason=f"published {version} but did not promote it: {exc}")
            else:
                result = PusherArtifact(pushed=True, version=version, promoted=True,
                                        reason=f"published and promoted {version}")
        (cfg.out_dir / "push.json").write_text(json.dumps({"pushed": result.pushed, "version": result.version,
                                                            "promoted": result.promoted, "reason": result.reason},
                                                           indent=2))
        return result

    def _card(self, version: str, blessing: dict) -> dict:
        """model_card.json + model_card.html of ``version`` in the pusher's folder (docs/model_card.md)."""
        cfg = self.config
        schema = cfg.schema
        card = build_card(version=version, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          run_id=cfg.run_id, blessing=blessing, validation=self.validation, trainer=self.trainer,
                          ingestion_metadata=cfg.extra_metadata, context=cfg.card_context, features=schema.features,
                          target=schema.target.model_dump(mode="json"))
        return write_card(cfg.out_dir, card)
