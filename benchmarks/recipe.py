"""The usual recipe tabpipe is compared with: impute + RobustScaler, imbalanced-learn SMOTETomek, then
GridSearchCV over the default candidates (src/tabpipe/defaults/model.yaml) with an imblearn Pipeline.

The configurations searched are the ones tabpipe's trainer samples from the same search spaces with
the same seed (``ParameterSampler``, ``n_iter`` per candidate), handed to ``GridSearchCV`` as a grid of
single points; resampling runs inside each CV fold (imblearn Pipeline), 5 stratified folds, ROC-AUC,
all cores, refit on the whole training split. Same train/test split as tabpipe (its own ``split``).

    .venv/bin/python -m benchmarks.recipe --rows 20000
"""
from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats
from sklearn.compose import ColumnTransformer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, ParameterSampler, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import OneHotEncoder, RobustScaler

from tabpipe.edge import prepare_process  # noqa: E402
prepare_process()  # OMP_WAIT_POLICY, before scikit-learn loads
from imblearn.combine import SMOTETomek  # noqa: E402
from imblearn.pipeline import Pipeline  # noqa: E402
from tabpipe.training.components.ingestion import split  # noqa: E402
from tabpipe.schema import Schema, coerce_frame, positive_mask  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "src/tabpipe/defaults/model.yaml"


def _distribution(space):
    if isinstance(space, list):
        return space
    (kind, (low, high)), = space.items()
    return {"log_uniform": lambda: stats.loguniform(low, high), "uniform": lambda: stats.uniform(low, high - low),
            "int_uniform": lambda: stats.randint(low, high + 1)}[kind]()


def configurations(seed: int, models: Path = MODELS) -> list[dict]:
    """One grid point per configuration: ``{"clf": [estimator with its sampled params]}``."""
    grid = []
    for cand in yaml.safe_load(models.read_text())["candidates"]:
        module, _, name = cand["class"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        space = {k: _distribution(v) for k, v in cand.get("search", {}).items()}
        sampled = list(ParameterSampler(space, n_iter=cand.get("n_iter", 4), random_state=seed)) if space else [{}]
        for params in sampled:
            est = cls(**cand.get("params", {}), **{k: (v.item() if hasattr(v, "item") else v) for k, v in params.items()})
            if "random_state" in est.get_params():
                est.set_params(random_state=seed)
            grid.append({"clf": [est]})
    return grid


def preprocessor(schema: Schema) -> ColumnTransformer:
    """Median impute + RobustScaler for numbers, most-frequent impute + one-hot for categories."""
    numeric = schema.features_of_type("int", "float", "bool")
    categorical = schema.features_of_type("category")
    return ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), RobustScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(handle_unknown="ignore", sparse_output=False)), categorical),
    ], sparse_threshold=0.0)


def run(df: pd.DataFrame, schema: Schema, seed: int, folds: int = 5, n_jobs: int = -1) -> dict:
    """Seconds per stage and the test ROC-AUC of the usual recipe on ``df``."""
    seconds = {}
    start = time.perf_counter()
    train, test = split(df, schema.target.name, 0.2, seed)
    features = schema.features_of_type("int", "float", "bool", "category")
    typed_train, _ = coerce_frame(train, schema, with_target=True)
    typed_test, _ = coerce_frame(test, schema, with_target=True)
    y_train = positive_mask(typed_train[schema.target.name], schema.target.positive).astype(int)
    y_test = positive_mask(typed_test[schema.target.name], schema.target.positive).astype(int)
    seconds["split + types"] = time.perf_counter() - start
    pipe = Pipeline([("prep", preprocessor(schema)), ("resample", SMOTETomek(random_state=seed)),
                     ("clf", "passthrough")])
    search = GridSearchCV(pipe, configurations(seed), scoring="roc_auc", n_jobs=n_jobs, refit=True,
                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    start = time.perf_counter()
    search.fit(typed_train[features], y_train)
    seconds["GridSearchCV (folds x configs + refit)"] = time.perf_counter() - start
    start = time.perf_counter()
    auc = roc_auc_score(y_test, search.predict_proba(typed_test[features])[:, 1])
    seconds["test scoring"] = time.perf_counter() - start
    return {"seconds": seconds, "test_roc_auc": float(auc), "configurations": len(search.cv_results_["params"]),
            "best": str(search.best_params_["clf"])}


def main() -> None:
    from tabpipe.sources.sample import generate
    from tabpipe.schema import load_schema

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    result = run(generate(args.rows, seed=11), load_schema(ROOT / "schema.yaml"), args.seed)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
