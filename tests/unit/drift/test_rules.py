"""tabpipe.drift.rules reproduces evidently 0.7's DataDriftPreset verdicts (run here on the same frames)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tabpipe.drift.rules import check_drift, column_kind, drift_report
from tabpipe.sources.sample import generate


def scenarios(rows: int, seed: int) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Reference and current frames: no shift, mean shift, variance shift, new categories, the generator's shift."""
    ref = generate(rows, seed=seed).drop(columns=["measurement_id", "fault_flag"])   # the id: a row's name, not data
    cur = generate(rows, seed=seed + 1).drop(columns=["measurement_id", "fault_flag"])
    numeric = [c for c in cur.columns if cur[c].dtype.kind == "f"]
    mean_shift = cur.copy()
    mean_shift[numeric[::2]] += 0.3 * ref[numeric[::2]].std()
    variance_shift = cur.copy()
    centre = variance_shift[numeric[1::2]].mean()
    variance_shift[numeric[1::2]] = centre + 1.6 * (variance_shift[numeric[1::2]] - centre)
    new_categories = cur.copy()
    replace = np.random.default_rng(seed).random(rows) < 0.3
    for column in ("region", "vendor"):
        new_categories[column] = new_categories[column].where(~replace, f"NEW-{column}")
    return ref, {"no_shift": cur, "mean_shift": mean_shift, "variance_shift": variance_shift,
                 "new_categories": new_categories, "generator_shift": generate(rows, seed=seed + 1, shift=0.6)
                 .drop(columns=["measurement_id", "fault_flag"])}


def evidently_verdicts(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, tuple[str, float, float]]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    raw = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference).dict()
    return {m["config"]["column"]: (m["config"]["method"], float(m["value"]), float(m["config"]["threshold"]))
            for m in raw["metrics"] if m["config"]["type"].endswith("ValueDrift")}


def evidently_drifted(method: str, value: float, threshold: float) -> bool:
    """evidently's decision per test: K-S p <= threshold, other p-values <, distances >=."""
    if method.startswith("K-S"):
        return value <= threshold
    return value < threshold if "p_value" in method else value >= threshold


@pytest.mark.parametrize("rows", [600, 2_500])   # <= 1,000 reference rows: p-value tests; above: distances
def test_verdicts_equal_evidently_in_every_scenario(rows):
    ref, currents = scenarios(rows, 3)
    drifted_somewhere, counts = set(), {}
    for name, cur in currents.items():
        ours, theirs = check_drift(ref, cur), evidently_verdicts(ref, cur)
        assert set(ours) == set(theirs), name
        for column, (method, value, threshold) in theirs.items():
            assert ours[column].method == method, (name, column)
            assert ours[column].threshold == threshold, (name, column)
            assert ours[column].score == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), (name, column)
            assert ours[column].drifted == evidently_drifted(method, value, threshold), (name, column)
        drifted_somewhere |= {c for c, v in ours.items() if v.drifted}
        counts[name] = sum(v.drifted for v in ours.values())
        if name == "new_categories":
            assert ours["region"].drifted and ours["vendor"].drifted
    assert len(drifted_somewhere) >= 5
    assert counts["mean_shift"] > counts["no_shift"] and counts["generator_shift"] > counts["no_shift"]


def test_column_kind_matches_evidently_inference():
    from evidently.core.datasets import infer_column_type

    n = 40
    frame = pd.DataFrame({
        "float": np.linspace(0, 1, n),
        "int_few": np.arange(n) % 4,
        "int_many": np.arange(n),
        "str_cat": pd.Series(["a", "b"] * (n // 2), dtype="str"),
        "str_text": pd.Series([f"t{i}" for i in range(n)], dtype="str"),
        "object_cat": pd.Series(["a", None] * (n // 2), dtype=object),
        "object_empty": pd.Series([None] * n, dtype=object),
        "object_mixed": pd.Series([1, "a"] * (n // 2), dtype=object),
        "bool": np.arange(n) % 2 == 0,
        "category": pd.Series(["x", "y"] * (n // 2), dtype="category"),
        "datetime": pd.date_range("2024-01-01", periods=n, freq="h"),
        "nullable_int": pd.Series(np.arange(n), dtype="Int64"),
    })
    names = {"Numerical": "num", "Categorical": "cat", "Text": "text"}
    for column in frame.columns:
        expected = names.get(infer_column_type(frame[column]).name)
        assert column_kind(frame[column]) == expected, column


def test_edge_columns_constant_single_value_and_empty():
    rng = np.random.default_rng(0)
    n = 1_500
    ref = pd.DataFrame({"const": np.full(n, 2.0), "const_moved": np.full(n, 2.0), "one": ["a"] * n,
                        "x": rng.normal(size=n), "gone": np.full(n, np.nan)})
    cur = ref.assign(const_moved=2.0 + rng.normal(0, 0.01, n), x=rng.normal(size=n))
    ours = check_drift(ref, cur)
    assert "gone" not in ours                         # no values: left out (evidently refuses the column)
    theirs = evidently_verdicts(ref.drop(columns="gone"), cur.drop(columns="gone"))
    assert set(ours) == set(theirs)
    for column, (method, value, threshold) in theirs.items():
        assert (ours[column].method, ours[column].drifted) == (method, evidently_drifted(method, value, threshold))
        assert ours[column].score == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert ours["const_moved"].drifted and ours["const_moved"].method.startswith("Wasserstein")  # std floor 0.001
    assert not ours["const"].drifted and not ours["one"].drifted and not ours["x"].drifted


def test_drift_report_samples_the_evidently_report_and_says_so(tmp_path):
    ref, currents = scenarios(3_000, 5)
    summary = drift_report(ref, currents["mean_shift"], tmp_path, drift_share=0.3, max_rows=1_200, seed=0)
    assert summary["reference_rows"] == 3_000 and summary["current_rows"] == 3_000
    assert summary["report_sampled"] and summary["report_reference_rows"] == 1_200
    assert summary["status"] == "drift" and summary["drifted_columns"]
    assert set(summary["drifted_columns"]) == {c for c, v in summary["columns"].items() if v["drifted"]}
    assert "timestamp" in summary["skipped_columns"]
    page = (tmp_path / "drift_report.html").read_text()
    assert "random sample of 1,200 reference" in page
    raw = json.loads((tmp_path / "drift_report.json").read_text())
    assert "random sample" in raw["tabpipe_note"] and raw["metrics"]
    unsampled = drift_report(ref.head(500), currents["no_shift"].head(500), tmp_path / "all", drift_share=0.5,
                             max_rows=1_200, seed=0)
    assert not unsampled["report_sampled"] and "is on all rows" in unsampled["report_note"]
    assert unsampled["status"] == "no_drift"
