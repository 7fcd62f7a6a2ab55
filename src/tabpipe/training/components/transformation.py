"""DataTransformation: fit the schema-built preprocessing on the training split only, transform both splits.

Emits the fitted preprocessor (dill) and the transformed float32 arrays (.npy; with sensitive columns in
memory only, see ``tabpipe.training.rowfiles``). Resampling is NOT applied
here: it belongs to model fitting, where the trainer applies it to training rows (and, inside
cross-validation, to each training fold) only. The test split is never resampled.
"""
from __future__ import annotations

import json

import dill
import numpy as np
import pandas as pd

from tabpipe.training.specs import (
    TransformationArtifact,
    TransformationConfig,
    ValidationArtifact,
)
from tabpipe.model.features import build_preprocessor, fit_transform
from tabpipe.schema import Schema, positive_mask


def split_xy(df: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature frame (schema order) and y as int 0/1 (1 = the schema's positive class)."""
    y = positive_mask(df[schema.target.name], schema.target.positive).astype(np.int64)
    return df[schema.features], y


class DataTransformation:
    """Fit imputation, scaling and encoding on the training split only."""
    def __init__(self, config: TransformationConfig, validation: ValidationArtifact):
        self.config, self.validation = config, validation

    def run(self) -> TransformationArtifact:
        """Fit the preprocessor and write the transformed train and test arrays."""
        cfg, out = self.config, self.config.out_dir
        out.mkdir(parents=True, exist_ok=True)
        X_train, y_train = split_xy(cfg.rows.read_frame(self.validation.train_path), cfg.schema)
        X_test, y_test = split_xy(cfg.rows.read_frame(self.validation.test_path), cfg.schema)
        preprocessor = build_preprocessor(cfg.schema, cfg.max_categories)
        xt_train, xt_test = fit_transform(preprocessor, X_train, X_test)
        names = tuple(str(n) for n in preprocessor.get_feature_names_out())
        paths = {k: out / f"{k}.npy" for k in ("x_train", "y_train", "x_test", "y_test")}
        for key, arr in zip(paths, (xt_train, y_train, xt_test, y_test)):
            cfg.rows.write_array(arr, paths[key])
        with open(out / "preprocessor.pkl", "wb") as fh:
            dill.dump(preprocessor, fh)
        (out / "feature_names.json").write_text(json.dumps(list(names), indent=1))
        return TransformationArtifact(
            preprocessor_path=out / "preprocessor.pkl",
            x_train_path=paths["x_train"], y_train_path=paths["y_train"],
            x_test_path=paths["x_test"], y_test_path=paths["y_test"],
            feature_names=names,
        )
