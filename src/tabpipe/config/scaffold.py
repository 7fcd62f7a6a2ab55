"""``tabpipe init``: write pipeline.yaml, schema.yaml (inferred) and model.yaml for a new dataset."""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import yaml

from tabpipe.errors import ConfigError, DataError
from tabpipe.schema import infer_schema
from tabpipe.sources import read_file

LARGE_ROWS = 50_000  # above this, init proposes `smote`: SMOTETomek's neighbour search is quadratic in rows

PIPELINE_TEMPLATE = """\
# tabpipe pipeline for {data_name} (written by `tabpipe init`). Relative paths resolve against this folder.
source:
  type: file
  path: {data_path}
  # MongoDB instead:  {{type: mongodb, uri_env: MONGODB_URI, database: mydb, collection: rows}}
  # SQL instead:      {{type: sql, url_env: DATABASE_URL, query: "SELECT * FROM rows"}}
schema: schema.yaml

run:
  artifacts_dir: artifacts
  seed: 42

split:
  test_size: 0.2

validation:
  on_invalid_rows: fail        # rows breaking a hard schema rule: fail, or drop (counted in the report); expectations only warn
  integrity:                   # checked before training, counted in validation_report.json
    leakage:
      stop_at_auc: 0.98        # a feature that alone ranks the target this well on the training rows stops the run
      allow: []                # features reported but never stopping the run
    across_split: keep_one_side   # copies of a feature row on both sides of the split: keep_one_side | count | off
  drift:
    fail_on_drift: false       # drift against the production model's training data only warns

transformation:
  resampling: {resampling}  # smotetomek | smote | none (training rows only); model.yaml candidates may override it{resampling_note}

training:
  models: model.yaml
  cv_folds: 5
  metric: roc_auc              # roc_auc | average_precision | f1
  time_budget_s: 600
  search_rounds: 4             # while the budget allows, up to 4 rounds of new configurations per candidate
  ensemble_size: 10            # final model: a weighted mean of the best configurations by CV (1: the best alone)
  n_jobs: -1

evaluation:
  metric: roc_auc              # roc_auc | pr_auc | f1, on the untouched test split
  min_score: 0.5               # a floor; weak but real signals (0.55-0.65) are common, so the next line guards
  max_chance_p: 0.01           # refuse a model random rankings of the test rows match this often: no better than chance
  min_improvement: 0.0         # over the production model
  # costs: {{false_positive: 1, false_negative: 10}}   # threshold: least expected cost instead of best F1

registry:
  backend: local
  path: model_registry
  require_signature: true      # models are signed (Ed25519) when published and verified before loading
  signing_key_file: .tabpipe/keys/registry-signing.pem   # private: the trainer only ($TABPIPE_REGISTRY_SIGNING_KEY wins)
  verify_key_file: .tabpipe/keys/registry-verify.pem     # public: servers ($TABPIPE_REGISTRY_VERIFY_KEY wins)
"""


def scaffold(data: Path, target: str, directory: Path, *, force: bool = False) -> list[Path]:
    """Infer a schema from ``data`` and write the three config files into ``directory``.

    Returns the written paths (pipeline.yaml, schema.yaml, model.yaml). Refuses to overwrite
    existing files unless ``force``.
    """
    df = read_file(data)
    if target not in df.columns:
        raise DataError(f"{data}: no column {target!r}; columns are: {', '.join(map(str, df.columns))}")
    if df[target].nunique(dropna=True) != 2:
        raise DataError(f"{data}: target {target!r} must have exactly two classes, found {df[target].nunique()}")
    schema = infer_schema(df, target)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / name for name in ("pipeline.yaml", "schema.yaml", "model.yaml")]
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise ConfigError(existing[0], None, "already exists (use --force to overwrite)")
    rel = os.path.relpath(Path(data).resolve(), directory.resolve())
    large = len(df) > LARGE_ROWS
    paths[0].write_text(PIPELINE_TEMPLATE.format(
        data_name=Path(data).name, data_path=json.dumps(rel), resampling="smote" if large else "smotetomek",
        resampling_note=f"\n  # {len(df):,} rows: smote, because SMOTETomek's Tomek-link step grows with rows squared" if large else ""))
    schema_doc = schema.model_dump(mode="json", exclude_defaults=True)
    header = (f"# Data contract for {Path(data).name}, inferred by `tabpipe init` from {len(df)} rows: edit freely.\n"
              "# types: int float bool category datetime string; role: feature | id | ignore.\n"
              "# Presence and type are hard rules: a row with an unreadable value is refused (training: see\n"
              "# validation.on_invalid_rows; prediction: an error for that row). min/max, categories and\n"
              "# nullable: false are expectations inferred from a sample: rows past them are used and scored\n"
              "# with a warning. List a column's rules under `hard: [range, category, null]` to refuse instead.\n"
              "# The first `role: id` column is what labels (`tabpipe outcomes`, POST /outcomes) are joined on:\n"
              "# it must name one row (or one entity with a single outcome), not e.g. a customer scored many times.\n")
    paths[1].write_text(header + yaml.safe_dump(schema_doc, sort_keys=False, allow_unicode=True))
    paths[2].write_text(resources.files("tabpipe").joinpath("defaults/model.yaml").read_text())
    return paths
