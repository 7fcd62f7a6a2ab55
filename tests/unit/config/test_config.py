"""Configuration loading: every problem is one ConfigError naming the file and the dotted key."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import tabpipe  # noqa: F401
from helpers import CHEAP_MODELS, REPO, SCHEMA, make_project
from tabpipe.cli import app
from tabpipe.config import EvaluationSection, load_settings
from tabpipe.errors import ConfigError

LR = "sklearn.linear_model.LogisticRegression"


@pytest.fixture
def project(tmp_path) -> Path:
    return make_project(tmp_path / "proj", rows=60)


def edit_yaml(path: Path, change) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """No terminal line wrapping in captured CLI output (rich reads COLUMNS on every print)."""
    monkeypatch.setenv("COLUMNS", "400")


def config_error(path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return info.value


# --------------------------------------------------------------------------- valid config

def test_valid_project_loads_with_absolute_paths(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the config's folder, not the cwd
    s = load_settings(Path("proj") / "pipeline.yaml")
    base = (tmp_path / "proj").resolve()
    assert s.config_path == base / "pipeline.yaml"
    assert s.pipeline.source.path == base / "data.csv"
    assert s.pipeline.schema_path == base / "schema.yaml"
    assert s.pipeline.training.models == base / "model.yaml"
    assert s.pipeline.run.artifacts_dir == base / "artifacts"
    assert s.pipeline.training.cv_folds == 3 and s.pipeline.transformation.resampling == "smote"
    assert [c.name for c in s.models.candidates] == ["logreg", "hgb"]
    assert s.schema_.target.name == "fault_flag"
    assert set(s.snapshot) == {"pipeline", "schema", "models"}
    assert s.snapshot["models"] == CHEAP_MODELS


def test_defaults_apply_for_omitted_sections(tmp_path):
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(SCHEMA))
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(CHEAP_MODELS))
    (tmp_path / "pipeline.yaml").write_text("source: {type: file, path: data.csv}\nschema: schema.yaml\n")
    p = load_settings(tmp_path / "pipeline.yaml").pipeline
    assert p.transformation.resampling == "smotetomek"
    assert p.validation.on_invalid_rows == "fail" and p.validation.drift.fail_on_drift is False
    assert p.training.cv_folds == 5 and p.run.seed == 42 and p.split.test_size == 0.2
    assert p.registry.backend == "local" and p.registry.path == (tmp_path / "model_registry").resolve()
    integrity = p.validation.integrity   # every integrity check on
    assert integrity.leakage.enabled and integrity.leakage.stop_at_auc == 0.98 and integrity.across_split == "keep_one_side"
    assert integrity.duplicate_rows and integrity.conflicting_labels


def test_leakage_allow_list_names_features_of_the_schema(project):
    edit_yaml(project, lambda d: d["validation"].update(integrity={"leakage": {"allow": ["alarm_count"]}}))
    assert load_settings(project, check_candidates=False).pipeline.validation.integrity.leakage.allow == ["alarm_count"]
    edit_yaml(project, lambda d: d["validation"].update(integrity={"leakage": {"allow": ["alarm_cnt", "cell_id"]}}))
    err = config_error(project)
    assert err.key == "validation.integrity.leakage.allow"
    assert "'alarm_cnt', 'cell_id' are not features of schema.yaml" in err.message   # cell_id: role id


def test_segments_short_and_long_form_and_unknown_columns(project):
    edit_yaml(project, lambda d: d.update(segments=["region", "latency_ms"]))
    seg = load_settings(project, check_candidates=False).pipeline.segments
    assert seg.columns == ["region", "latency_ms"] and seg.min_rows == 200 and seg.max_drop == 0.02 and seg.bins == 4
    edit_yaml(project, lambda d: d.update(segments={"columns": ["region"], "min_rows": 500, "max_drop": 0.05}))
    seg = load_settings(project, check_candidates=False).pipeline.segments
    assert (seg.columns, seg.min_rows, seg.max_drop) == (["region"], 500, 0.05)
    edit_yaml(project, lambda d: d.update(segments=["region", "regoin"]))
    err = config_error(project)
    assert (Path(err.file).name, err.key) == ("pipeline.yaml", "segments.columns[1]")
    assert "'regoin' is not a column of schema.yaml" in err.message
    edit_yaml(project, lambda d: d.update(segments=["fault_flag"]))
    assert "is the target" in config_error(project).message
    schema = project.parent / "schema.yaml"
    edit_yaml(schema, lambda d: d["columns"]["vendor"].update(sensitive=True))
    edit_yaml(project, lambda d: d.update(segments=["vendor"]))
    assert "is sensitive: true" in config_error(project).message
    edit_yaml(project, lambda d: d.update(segments={"columns": ["region"], "max_drop": 2}))
    assert config_error(project).key == "segments.max_drop"


def test_model_card_keys_are_optional_and_strict(project):
    card = load_settings(project, check_candidates=False).pipeline.model_card
    assert card.owner is None and card.limitations == []
    edit_yaml(project, lambda d: d.update(model_card={"owner": "network ops", "limitations": "4G only"}))
    assert load_settings(project, check_candidates=False).pipeline.model_card.limitations == ["4G only"]
    edit_yaml(project, lambda d: d.update(model_card={"ownr": "x"}))
    assert config_error(project).key == "model_card.ownr"


# --------------------------------------------------------------------------- pipeline.yaml errors

def test_missing_file(tmp_path):
    missing = tmp_path / "nope" / "pipeline.yaml"
    err = config_error(missing)
    assert str(missing) in str(err) and "not found" in str(err)


def test_yaml_syntax_error(project):
    project.write_text("source: {type: file, path: data.csv\ntraining: [unclosed\n")
    err = config_error(project)
    assert err.file == str(project) and "not valid YAML" in str(err)


def test_top_level_not_a_mapping(project):
    project.write_text("- just\n- a list\n")
    assert "mapping" in str(config_error(project))


def test_unknown_key(project):
    edit_yaml(project, lambda d: d["training"].update(metrc="roc_auc"))
    err = config_error(project)
    assert err.key == "training.metrc"
    assert str(project) in str(err) and "training.metrc" in str(err) and "unknown key" in str(err)


def test_unknown_key_inside_source(project):
    edit_yaml(project, lambda d: d["source"].update(paht="x.csv"))
    assert config_error(project).key == "source.paht"


def _join(doc: dict, **as_of) -> None:
    doc["source"] = {"type": "join", "base": {"type": "file", "path": "data.csv"}, "label_time": "timestamp",
                     "joins": [{"name": "cells", "source": {"type": "sql", "url": "sqlite:///cells.db", "query": "SELECT 1"},
                                "on": ["cell_id"], "as_of": {"column": "seen_at", **as_of}}]}


def test_join_source_paths_resolve_against_the_config_folder(project):
    edit_yaml(project, _join)
    source = load_settings(project).pipeline.source
    assert source.base.path == project.parent.resolve() / "data.csv"
    assert source.joins[0].source.url == f"sqlite:///{project.parent.resolve() / 'cells.db'}"


@pytest.mark.parametrize("as_of, key, message", [
    ({"tolerance": "90x"}, "source.joins[0].as_of.tolerance", "bad duration '90x'"),
    ({"tolerance": "90d", "typo": 1}, "source.joins[0].as_of.typo", "unknown key"),
    ({"exact_matches": "sometimes"}, "source.joins[0].as_of.exact_matches", "valid boolean"),
])
def test_join_source_errors_name_file_and_key(project, as_of, key, message):
    edit_yaml(project, lambda d: _join(d, **as_of))
    err = config_error(project)
    assert (err.file, err.key) == (str(project.resolve()), key) and message in err.message


def test_join_source_without_label_time_is_a_config_error(project):
    edit_yaml(project, lambda d: (_join(d), d["source"].pop("label_time")))
    err = config_error(project)
    assert err.key == "source" and "joins[0] (cells) has as_of but no label time" in err.message


def test_wrong_type(project):
    edit_yaml(project, lambda d: d["training"].update(cv_folds="five"))
    err = config_error(project)
    assert err.key == "training.cv_folds" and "integer" in err.message


@pytest.mark.parametrize("section, key, value, dotted", [
    ("evaluation", "metric", "accuracy", "evaluation.metric"),
    ("transformation", "resampling", "adasyn", "transformation.resampling"),
    ("split", "test_size", 1.5, "split.test_size"),
    ("validation", "on_invalid_rows", "ignore", "validation.on_invalid_rows"),
    ("training", "time_budget_s", 0, "training.time_budget_s"),
    ("training", "search_rounds", 0, "training.search_rounds"),
    ("training", "ensemble_size", 0, "training.ensemble_size"),
    ("validation", "integrity", {"across_split": "drop"}, "validation.integrity.across_split"),
    ("validation", "integrity", {"leakage": {"stop_at_auc": 0.4}}, "validation.integrity.leakage.stop_at_auc"),
    ("training", "calibration", "isotonic", "training.calibration"),
    ("evaluation", "max_ece_increase", -0.1, "evaluation.max_ece_increase"),
    ("evaluation", "max_chance_p", 1.0, "evaluation.max_chance_p"),
    ("evaluation", "costs", {"false_positive": 1, "false_negative": 0}, "evaluation.costs.false_negative"),
    ("evaluation", "costs", {"false_positive": 1}, "evaluation.costs.false_negative"),
])
def test_out_of_domain_values(project, section, key, value, dotted):
    edit_yaml(project, lambda d: d[section].update({key: value}))
    assert config_error(project).key == dotted


@pytest.mark.parametrize("section", ["training", "evaluation"])
@pytest.mark.parametrize("spelled", ["pr_auc", "average_precision"])
def test_average_precision_has_one_name_inside(project, section, spelled):
    """Both YAML spellings of the average precision load, in either section, as ``pr_auc`` (the key run.json
    and blessing.json record)."""
    edit_yaml(project, lambda d: d[section].update(metric=spelled))
    assert getattr(load_settings(project, check_candidates=False).pipeline, section).metric == "pr_auc"


@pytest.mark.parametrize("key", ["retrain_psi_at_least", "watch_psi_at_least"])
def test_governance_thresholds_must_be_finite(project, key):
    edit_yaml(project, lambda d: d.setdefault("monitoring", {}).setdefault("rules", {}).update({key: float("inf")}))
    err = config_error(project)
    assert err.key == f"monitoring.rules.{key}" and "finite" in err.message


def test_prediction_log_format_defaults_to_parquet_and_is_checked(project):
    assert load_settings(project, check_candidates=False).pipeline.monitoring.log.format == "parquet"
    edit_yaml(project, lambda d: d.setdefault("monitoring", {}).update(log={"format": "json"}))
    err = config_error(project)
    assert err.key == "monitoring.log.format" and "parquet" in err.message and "sql" in err.message


@pytest.mark.parametrize("origin", ["*", "https://app.example.com/", "app.example.com", "https://*.example.com",
                                    "ftp://x.example.com", "https://app.example.com/path"])
def test_allowed_origins_must_be_origins(project, origin):
    edit_yaml(project, lambda d: d.setdefault("serve", {}).update(allowed_origins=[origin]))
    err = config_error(project)
    assert err.key.startswith("serve.allowed_origins") and "not an origin" in err.message


def test_serve_input_limits_default_and_validate(project):
    from tabpipe.config import load_settings

    serve = load_settings(project, check_candidates=False).pipeline.serve
    assert serve.allowed_origins == [] and serve.max_csv_rows == 100_000 and serve.max_records == 10_000
    edit_yaml(project, lambda d: d.setdefault("serve", {}).update(allowed_origins=["https://app.example.com:8443"],
                                                                   max_csv_rows=5))
    serve = load_settings(project, check_candidates=False).pipeline.serve
    assert serve.allowed_origins == ["https://app.example.com:8443"] and serve.max_csv_rows == 5
    edit_yaml(project, lambda d: d["serve"].update(max_csv_rows=0))
    assert config_error(project).key == "serve.max_csv_rows"


def test_calibration_defaults_and_costs_reach_the_trainer(project, tmp_path):
    from tabpipe.training.rowfiles import RowFiles
    from tabpipe.training.specs import EvaluationConfig, TrainerConfig

    settings = load_settings(project, check_candidates=False)
    p = settings.pipeline
    assert (p.training.calibration, p.evaluation.max_ece_increase, p.evaluation.costs) == ("platt", 0.05, None)
    assert TrainerConfig.from_settings(settings, out_dir=tmp_path, rows=RowFiles()).costs is None
    edit_yaml(project, lambda d: d["evaluation"].update(costs={"false_positive": 1, "false_negative": 10},
                                                        max_ece_increase=None))
    settings = load_settings(project, check_candidates=False)
    assert TrainerConfig.from_settings(settings, out_dir=tmp_path, rows=RowFiles()).costs == (1.0, 10.0)
    assert EvaluationConfig.from_settings(settings, out_dir=tmp_path, rows=RowFiles()).max_ece_increase is None
    assert EvaluationSection().max_chance_p == 0.01          # on unless a config turns it off
    for value in (0.02, None):
        edit_yaml(project, lambda d, value=value: d["evaluation"].update(max_chance_p=value))
        assert EvaluationConfig.from_settings(load_settings(project, check_candidates=False), out_dir=tmp_path,
                                              rows=RowFiles()).max_chance_p == value


def test_n_jobs_zero_is_a_config_error(project):
    edit_yaml(project, lambda d: d["training"].update(n_jobs=0))
    assert config_error(project).key == "training.n_jobs"


def test_missing_source(project):
    edit_yaml(project, lambda d: d.pop("source"))
    err = config_error(project)
    assert err.key == "source" and "required" in err.message.lower()


def test_schema_file_missing(project):
    edit_yaml(project, lambda d: d.update(schema="nowhere.yaml"))
    err = config_error(project)
    assert err.file == str(project.parent / "nowhere.yaml") and "not found" in str(err)


# --------------------------------------------------------------------------- schema.yaml errors

def test_schema_unknown_column_type(project):
    schema_path = project.parent / "schema.yaml"
    edit_yaml(schema_path, lambda d: d["columns"]["latency_ms"].update(type="decimal"))
    err = config_error(project)
    assert err.file == str(schema_path) and err.key == "columns.latency_ms.type"


def test_schema_inconsistent_rule(project):
    schema_path = project.parent / "schema.yaml"
    edit_yaml(schema_path, lambda d: d["columns"]["region"].update(min=0))
    err = config_error(project)
    assert err.file == str(schema_path) and err.key == "columns.region" and "min/max" in err.message


# --------------------------------------------------------------------------- model.yaml errors

def write_models(project: Path, candidates: list[dict]) -> Path:
    path = project.parent / "model.yaml"
    path.write_text(yaml.safe_dump({"candidates": candidates}, sort_keys=False))
    return path


def test_bad_class_path(project):
    path = write_models(project, [{"name": "x", "class": "sklearn.nope.Foo"}])
    err = config_error(project)
    assert err.file == str(path) and err.key == "candidates[0].class"
    assert "candidates[0].class" in str(err) and "sklearn.nope.Foo" in str(err)


def test_missing_attribute_and_undotted_class(project):
    write_models(project, [{"name": "a", "class": LR}, {"name": "b", "class": "sklearn.linear_model.Nope"}])
    assert config_error(project).key == "candidates[1].class"
    write_models(project, [{"name": "a", "class": "LogisticRegression"}])
    assert config_error(project).key == "candidates[0].class"


def test_class_that_is_not_a_classifier(project):
    write_models(project, [{"name": "scaler", "class": "sklearn.preprocessing.StandardScaler"}])
    err = config_error(project)
    assert err.key == "candidates[0].class" and "predict_proba" in err.message


def test_class_needing_constructor_arguments_is_a_config_error(project):
    write_models(project, [{"name": "stack", "class": "sklearn.ensemble.StackingClassifier"}])
    assert config_error(project).key == "candidates[0].class"


def test_params_key_that_is_not_a_parameter(project):
    path = write_models(project, [
        {"name": "lr", "class": LR},
        {"name": "rf", "class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimator": 10}},
    ])
    err = config_error(project)
    assert err.file == str(path) and err.key == "candidates[1].params.n_estimator"
    assert "candidates[1].params.n_estimator" in str(err) and "RandomForestClassifier" in str(err)


def test_class_taking_kwargs_gets_its_library_parameters_passed_on(project):
    """LightGBM's sklearn class takes **kwargs (``verbosity`` is not in its signature): such keys are passed on, while
    a class with a closed signature still gets a misspelt key refused (the test above)."""
    write_models(project, [{"name": "lgbm", "class": "lightgbm.LGBMClassifier",
                            "params": {"n_jobs": 1, "verbosity": -1}, "search": {"num_leaves": [4, 8]}}])
    settings = load_settings(project)
    assert settings.models.candidates[0].params == {"n_jobs": 1, "verbosity": -1}


def test_search_key_that_is_not_a_parameter(project):
    write_models(project, [{"name": "lr", "class": LR, "search": {"c": [0.1, 1.0]}}])
    assert config_error(project).key == "candidates[0].search.c"


@pytest.mark.parametrize("space", [
    {"log_uniform": [0, 1]},
    {"uniform": [2, 1]},
    {"normal": [0, 1]},
    [],
    "0.1..1",
    {"uniform": [0.1]},
])
def test_bad_search_space(project, space):
    write_models(project, [{"name": "lr", "class": LR, "search": {"C": space}}])
    err = config_error(project)
    assert err.key == "candidates[0].search.C"


def test_duplicate_candidate_names_and_empty_list(project):
    write_models(project, [{"name": "a", "class": LR}, {"name": "a", "class": LR}])
    assert config_error(project).key == "candidates[1].name"
    write_models(project, [])
    assert config_error(project).key == "candidates"


def test_candidate_resampling_values(project):
    path = write_models(project, [{"name": "a", "class": LR}, {"name": "b", "class": LR, "resampling": "adasyn"}])
    err = config_error(project)
    assert err.file == str(path) and err.key == "candidates[1].resampling" and "smotetomek" in err.message
    write_models(project, [{"name": "a", "class": LR}, {"name": "b", "class": LR, "resampling": "none"}])
    a, b = load_settings(project).models.candidates
    assert (a.resampling, b.resampling) == ("inherit", "none")
    assert (a.resampling_or("smote"), b.resampling_or("smote")) == ("smote", "none")


HGB = "sklearn.ensemble.HistGradientBoostingClassifier"


def test_grow_names_an_integer_parameter(project):
    ok = {"name": "hgb", "class": HGB, "params": {"early_stopping": False},
          "search": {"max_iter": [50, 100]}, "grow": {"param": "max_iter"}}
    write_models(project, [ok])
    (cand,) = load_settings(project).models.candidates
    assert (cand.grow.param, cand.grow.factor, cand.grow.times) == ("max_iter", 2.0, 3)
    for grow, key in [({"param": "learning_rate"}, "candidates[0].grow.param"),      # searched, but floats
                      ({"param": "max_depth"}, "candidates[0].grow.param"),          # neither fixed nor searched
                      ({"param": "max_iter", "factor": 1.0}, "candidates[0].grow.factor"),
                      ({"param": "max_iter", "times": 0}, "candidates[0].grow.times"),
                      ({"param": "max_iter", "by": 2}, "candidates[0].grow.by")]:
        write_models(project, [{**ok, "search": {"max_iter": [50, 100], "learning_rate": [0.1, 0.2]}, "grow": grow}])
        err = config_error(project)
        assert err.key == key, (grow, err.key, err.message)
    write_models(project, [{**ok, "params": {"max_iter": 80}, "search": {}}])      # fixed in params: fine
    assert load_settings(project).models.candidates[0].grow.param == "max_iter"


def test_unknown_key_in_candidate(project):
    write_models(project, [{"name": "a", "class": LR, "parms": {}}])
    assert config_error(project).key == "candidates[0].parms"


# --------------------------------------------------------------------------- through the CLI

def _flat(text: str) -> str:
    """Output with terminal line wrapping undone."""
    return text.replace("\n", "")


CLI_BREAKAGES = [
    (lambda p: edit_yaml(p, lambda d: d["training"].update(metrc=1)), "pipeline.yaml", "training.metrc"),
    (lambda p: edit_yaml(p, lambda d: d["training"].update(cv_folds="five")), "pipeline.yaml", "training.cv_folds"),
    (lambda p: write_models(p, [{"name": "x", "class": "sklearn.nope.Foo"}]), "model.yaml", "candidates[0].class"),
    (lambda p: edit_yaml(p.parent / "schema.yaml", lambda d: d["columns"]["region"].update(type="enum")),
     "schema.yaml", "columns.region.type"),
]


# `tabpipe models` does not import candidate classes by design (test_models_list_ignores_candidate_classes)
@pytest.mark.parametrize("breakage, file_name, key, command", [
    (*case, command) for case in CLI_BREAKAGES for command in (["train"], ["models", "list"])
    if not (command[0] == "models" and case[1] == "model.yaml")
])
def test_cli_config_error_exit_2(project, breakage, file_name, key, command):
    breakage(project)
    result = CliRunner().invoke(app, [*command, "--config", str(project)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    flat = _flat(result.output)
    assert str(project.parent / file_name) in flat and key in flat
    assert not (project.parent / "artifacts").exists()  # nothing ran


def test_models_list_ignores_candidate_classes(project):
    """Registry commands never train, so they skip importing model.yaml's classes (seconds of imports);
    `train` still rejects the same file with exit 2."""
    write_models(project, [{"name": "x", "class": "sklearn.nope.Foo"}])
    listed = CliRunner().invoke(app, ["models", "list", "--config", str(project)])
    assert listed.exit_code == 0, listed.output
    assert "registry is empty" in listed.output
    trained = CliRunner().invoke(app, ["train", "--config", str(project)])
    assert trained.exit_code == 2 and "candidates[0].class" in _flat(trained.output)


def test_cli_missing_config_file_exit_2(tmp_path):
    missing = tmp_path / "absent.yaml"
    result = CliRunner().invoke(app, ["train", "--config", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in _flat(result.output) and "Traceback" not in result.output


def test_cli_config_error_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # a standard terminal; a long path must still not wrap
    project = make_project(tmp_path / "a_project_folder_with_a_fairly_ordinary_long_name", rows=60)
    edit_yaml(project, lambda d: d["training"].update(metrc=1))
    result = CliRunner().invoke(app, ["train", "--config", str(project)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_repository_model_yaml_is_the_packaged_default():
    """`tabpipe init` writes the packaged defaults; the repository's config/model.yaml must not drift from them."""
    from importlib import resources

    repo = REPO
    packaged = resources.files("tabpipe").joinpath("defaults/model.yaml").read_text()
    assert (repo / "config/model.yaml").read_text() == packaged
