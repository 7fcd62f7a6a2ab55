"""Seconds to check logged rows against a frozen reference profile (PSI of every feature), by row count.

    .venv/bin/python benchmarks/monitor_bench.py [--rows 100000 1000000] [--repeats 5]
    .venv/bin/python benchmarks/monitor_bench.py --from-log --rows 1000000 [--log-format parquet|sql] [--repeats 3]
    .venv/bin/python benchmarks/monitor_bench.py --from-log --rows 1000000 --file-rows 1000 --compact [--repeats 3]

The rows: 30 features (24 numeric with ~2 % missing, 6 categorical with 5-40 levels and ~1 %
unseen values), already typed, as ``tabpipe monitor`` holds them after ``coerce_frame``. The
profile is built from 200,000 training rows (10 quantile bins). Measured: ``frame_psi`` (numpy
searchsorted + bincount; categorical: a hash lookup per value) — the target is <= 5 s for 1M rows.
Peer, in the same run: the same bins counted the usual pandas way (``pd.cut`` + ``value_counts``
per column). Also reported, for context: the schema check (``coerce_frame``) of the same rows,
which ``tabpipe monitor`` runs for the expectation-violation rates. Medians of ``--repeats`` runs.

``--full`` also times a whole monitoring run (``run_monitor``) on the same rows as logged rows
(probabilities given, outcomes for every row): schema check, quality rates, PSI, realised metrics,
the label-free estimate, governance, the 6-panel dashboard and HTML report, and the writes to a
fresh SQLite history store; evidently off (it is told to sample; its time does not grow with the
window). A logistic regression on the 30 features plays the model.

``--from-log`` times what a user runs: ``tabpipe monitor --since 7d --json`` (a subprocess, evidently's
drift rules on with their default 20,000-row sample; its HTML report is on demand, ``--report``, and not
timed) over a history store holding ``--rows`` logged predictions of the same 30 features, spread over
the last 3 days, 30 % of them with outcomes (``HistoryStore.attach_outcomes``). ``--log-format parquet``
(default): the rows are written straight to the Parquet log through its writer (``columnar.log_table`` +
``write_partitions`` + ``HistoryStore.index_log_files``, 250,000 rows at a time: 10M rows build in
minutes); ``sql``: the SQLite ``predictions`` table, written with ``HistoryStore.log_predictions``.
Also reported: the peak RSS and the CPU seconds of the ``tabpipe monitor`` process (GNU ``/usr/bin/time``: the
peak of its largest process, the CPU seconds of all of them; on a shared machine the CPU seconds say more than
the wall time), and the peak of the summed RSS of its process tree, sampled every 0.1 s (a window of 2M rows or
more is counted by several processes, each holding its own memory). The
project (30-feature schema, 20,000 training rows, a logistic regression trained by ``tabpipe train``)
and the store are built once in ``--work-dir`` (reused when it exists). Reported: the wall time of the
command and the median of each stage the run records (``stage_seconds``: schema_check_and_score (reading the
window chunk by chunk, one pass per chunk),
performance, psi, evidently, store, dashboard, alert, report). Peer (SQL log only), in the same run: reading
the same window the way ``monitor`` did before (``HistoryStore.predictions`` — SQLAlchemy's JSON column parsed
row by row — then ``pd.DataFrame.from_records``), checked to give the same frame.

``--file-rows N`` (Parquet log) writes the log N rows a write, as a busy service's background writer does
(``batch_rows``: 1,000 rows a second at 1,000 req/s): a file per write. ``--compact`` then times the command
over that log, runs ``tabpipe log compact --older-than 1min`` once (timed) and times the command again over the
same window: the peer is the uncompacted log of the same rows, in the same run; both results are checked equal
(decision, rows, metrics). The store is built afresh in a temporary folder (compaction changes it).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tabpipe.edge import prepare_process  # noqa: E402
prepare_process()  # OMP_WAIT_POLICY, before scikit-learn loads
from tabpipe.drift.profile import build_profile
from tabpipe.drift.psi import frame_psi, psi
from tabpipe.schema import Schema, coerce_frame

N_NUMERIC, N_CATEGORICAL = 24, 6


def make_schema() -> Schema:
    columns = {f"n{i}": {"type": "float"} for i in range(N_NUMERIC)}
    columns.update({f"c{i}": {"type": "category"} for i in range(N_CATEGORICAL)})
    return Schema.model_validate({"target": {"name": "y", "positive": 1}, "columns": columns})


def make_rows(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {}
    for i in range(N_NUMERIC):
        x = rng.lognormal(0.0, 1.0, n) if i % 3 == 0 else rng.normal(shift * (i % 2), 1.0 + i / 10, n)
        x[rng.random(n) < 0.02] = np.nan
        data[f"n{i}"] = x
    for i in range(N_CATEGORICAL):
        levels = np.array([f"L{j}" for j in range(5 + 7 * i)] + ["unseen"], dtype=object)
        p = np.r_[np.full(len(levels) - 1, 0.99 / (len(levels) - 1)), 0.01 if shift else 0.0]
        data[f"c{i}"] = levels[rng.choice(len(levels), n, p=p / p.sum())]
    return pd.DataFrame(data)


def pandas_psi(profile_features: dict, frame: pd.DataFrame) -> dict:
    """The peer: the same buckets and formula, counted with pd.cut / value_counts."""
    out = {}
    for name, ref in profile_features.items():
        col = frame[name]
        if ref["kind"] == "numeric":
            bins = pd.cut(col, [-np.inf, *ref["edges"], np.inf], right=True)
            counts = bins.value_counts(sort=False).tolist() + [int(col.isna().sum())]
        else:
            known = col.where(col.isin(ref["categories"]) | col.isna(), "__other__")
            vc = known.value_counts(dropna=False)
            counts = [int(vc.get(c, 0)) for c in ref["categories"]] + [int(vc.get("__other__", 0)), int(col.isna().sum())]
        counts = np.asarray(counts, dtype=float)
        out[name] = psi(ref["shares"], counts / counts.sum())
    return out


def full_run_seconds(schema: Schema, train: pd.DataFrame, rows: pd.DataFrame, repeats: int, tmp: Path) -> float:
    """Median seconds of ``run_monitor`` over ``rows`` as a logged window (see the module docstring)."""
    from datetime import datetime, timezone

    from sklearn.linear_model import LogisticRegression

    from tabpipe.config import AlertsSection, RulesSection
    from tabpipe.model import TabularModel
    from tabpipe.monitoring.monitor import MonitorSettings, Window, run_monitor
    from tabpipe.history.store import HistoryStore
    from tabpipe.model.features import build_preprocessor

    rng = np.random.default_rng(2)
    fit_rows = train.iloc[:20_000]
    y_fit = (rng.random(len(fit_rows)) < 1 / (1 + np.exp(-(fit_rows["n1"].fillna(0).to_numpy() - 2)))).astype(int)
    pre = build_preprocessor(schema).fit(fit_rows)
    model = TabularModel(schema=schema, preprocessor=pre, estimator=LogisticRegression(max_iter=500).fit(
        pre.transform(fit_rows), y_fit), threshold=0.5, labels=(0, 1))
    y_test = (rng.random(2000) < 0.15).astype(int)
    profile = build_profile(train, schema, model.predict_proba(train.iloc[:2000]), y_test, 0.5)
    proba = model.predict_proba(rows)
    outcomes = pd.Series((rng.random(len(rows)) < proba).astype(int))
    now = datetime.now(timezone.utc)
    window = Window(rows, "bench", now, now, proba, outcomes)
    settings = MonitorSettings(rules=RulesSection(), alerts=AlertsSection(), psi_min_rows=500, evidently=False,
                               evidently_max_rows=20_000, evidently_drift_share=0.5, seed=42)
    times = []
    for i in range(repeats):
        store = HistoryStore.open(f"sqlite:///{tmp / f'history-{len(rows)}-{i}.sqlite'}")
        start = time.perf_counter()
        run_monitor(window, model=model, version="v0001", profile=profile, reference=None, out_dir=tmp / f"run-{len(rows)}-{i}",
                    settings=settings, store=store)
        times.append(time.perf_counter() - start)
        store.close()
    return statistics.median(times)


def _keys(work: Path) -> None:
    """The registry keypair of the --from-log project (kept in ``work``, so a reused project still verifies)."""
    import os

    from tabpipe.registry.base import SIGNING_KEY_ENV, VERIFY_KEY_ENV
    from tabpipe.registry.signing import generate_keypair

    files = work / "signing.pem", work / "verify.pem"
    if not files[0].exists():
        for path, pem in zip(files, generate_keypair()):
            path.write_bytes(pem)
    os.environ[SIGNING_KEY_ENV], os.environ[VERIFY_KEY_ENV] = (path.read_text() for path in files)


def write_columnar_log(store, model, version: str, rows: int, chunk: int = 250_000, file_rows: int | None = None) -> None:
    """``rows`` logged rows written straight to the Parquet log through its writer (``columnar.log_table`` ->
    ``write_partitions`` -> ``HistoryStore.index_log_files``, what ``log_predictions`` does after turning
    dicts into columns), ``chunk`` rows at a time (memory bounded), times spread evenly over the last 3 days;
    ``file_rows``: each chunk in writes of that many rows (a file per write and hour)."""
    import pyarrow as pa

    from tabpipe.history.columnar import log_table, write_partitions

    now = pd.Timestamp.now(tz="UTC").floor("s").tz_localize(None)
    offsets = np.linspace(3 * 86400, 60, rows).round()
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        part = make_rows(n, seed=1000 + start // chunk, shift=0.3)
        proba = model.predict_proba(part)
        stamps = (now - pd.to_timedelta(offsets[start:start + n], unit="s")).to_numpy()
        index = np.arange(start, start + n)
        columns = {"request_id": [f"bench-{i // 50_000}" for i in index], "row_index": (index % 50_000).tolist(),
                   "row_id": [f"bench-{i // 50_000}:{i % 50_000}" for i in index], "logged_at": stamps,
                   "model_version": [version] * n, "probability": proba,
                   "prediction": (proba >= model.threshold).astype(int).astype(str).tolist(), "warnings": ["[]"] * n}
        inputs = {name: pa.array(part[name], from_pandas=True) for name in part.columns}
        table = log_table(columns, inputs)
        step = file_rows or n
        for at in range(0, n, step):
            store.index_log_files(write_partitions(store.log_dir, table.slice(at, step)))


def build_log_project(work: Path, rows: int, log_format: str = "sql", file_rows: int | None = None) -> Path:
    """The --from-log project in ``work`` (built once): returns its pipeline.yaml. ``log_format`` parquet:
    the rows are written straight to the Parquet log (``write_columnar_log``, ``file_rows`` a write)."""
    import json
    import subprocess
    import sys

    import yaml

    from tabpipe.history.store import HistoryStore

    config = work / "pipeline.yaml"
    store_path = work / "registry" / "history.sqlite"
    work.mkdir(parents=True, exist_ok=True)
    _keys(work)
    if not config.exists():
        schema = make_schema().model_dump(mode="json", by_alias=True, exclude_defaults=True)
        (work / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
        train = make_rows(20_000, seed=0)
        rng = np.random.default_rng(3)
        logit = 0.8 * train["n1"].fillna(0).to_numpy() - 0.5 * train["n4"].fillna(0).to_numpy() - 2
        train["y"] = (rng.random(len(train)) < 1 / (1 + np.exp(-logit))).astype(int)
        train.to_csv(work / "train.csv", index=False)
        (work / "model.yaml").write_text(yaml.safe_dump({"candidates": [{
            "name": "logreg", "class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}}]}))
        config.write_text(yaml.safe_dump({
            "source": {"type": "file", "path": "train.csv"}, "schema": "schema.yaml",
            "run": {"artifacts_dir": "artifacts", "seed": 0}, "transformation": {"resampling": "none"},
            "training": {"models": "model.yaml", "cv_folds": 3, "time_budget_s": 120, "n_jobs": 1},
            "evaluation": {"min_score": 0.5}, "registry": {"backend": "local", "path": "registry"},
            "monitoring": {"log_predictions": True, "log": {"format": log_format}}}, sort_keys=False))
        done = subprocess.run([str(Path(sys.executable).with_name("tabpipe")), "train", "--config", str(config)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"tabpipe train failed:\n{done.stdout}\n{done.stderr}")
    with HistoryStore.open(f"sqlite:///{store_path}", log_format=log_format) as store:
        have = store.count_predictions()
        if have != rows:
            if have:
                raise SystemExit(f"{store_path} holds {have} logged rows, not {rows}: use another --work-dir")
            from tabpipe.config import load_settings
            from tabpipe.registry import open_registry

            import os

            settings = load_settings(config)
            model, meta = open_registry(settings.pipeline.registry, os.environ, sign=False,
                                         config_file=config).load_model()
            started = time.perf_counter()
            if log_format == "parquet":
                write_columnar_log(store, model, meta["version"], rows, file_rows=file_rows)
            else:
                logged = make_rows(rows, seed=1, shift=0.3)
                proba = model.predict_proba(logged)
                now = pd.Timestamp.now(tz="UTC").floor("s")
                stamps = (now - pd.to_timedelta(np.linspace(3 * 86400, 60, rows).round(), unit="s")).to_pydatetime()
            for start in range(0, rows if log_format == "sql" else 0, 50_000):
                part = logged.iloc[start:start + 50_000]
                records = part.astype(object).where(part.notna(), None).to_dict("records")   # JSON null, as a client sends
                store.log_predictions([{
                    "request_id": f"bench-{start // 50_000}", "row_index": i, "model_version": meta["version"],
                    "logged_at": stamps[start + i], "inputs": record, "probability": float(proba[start + i]),
                    "prediction": int(proba[start + i] >= model.threshold)} for i, record in enumerate(records)])
            written = time.perf_counter() - started
            labelled = np.flatnonzero(np.random.default_rng(4).random(rows) < 0.3)
            outcome_rng = np.random.default_rng(5)
            for start in range(0, len(labelled), 1_000_000):     # outcomes: 0/1 drawn at 30 % (no link to proba)
                store.attach_outcomes({f"bench-{i // 50_000}:{i % 50_000}": int(outcome_rng.random() < 0.3)
                                       for i in labelled[start:start + 1_000_000]})
            folder = store.log_dir
            size = store_path.stat().st_size + sum(f.stat().st_size for f in folder.rglob("*.parquet")) if folder else 0
            print(f"(built the {log_format} log: {rows:,} logged rows written in {written:.0f} s, outcomes attached in "
                  f"{time.perf_counter() - started - written:.0f} s, {size / 1e6:.0f} MB; {json.dumps(meta['version'])})")
    return config


def run_measured(command: list[str]) -> tuple[subprocess.CompletedProcess, float, float, float, float]:
    """Run ``command``: (its completed process, wall seconds, peak RSS in MB, CPU seconds (user + system) of it
    and the processes it waited for, peak of the summed RSS of its process tree in MB, sampled every 0.1 s: a
    monitoring run that counts a large window in several processes holds memory in each)."""
    import os
    import threading

    import psutil

    with tempfile.NamedTemporaryFile("r") as usage:
        started = time.perf_counter()   # GNU time execs the command from its own small process: the peak is the
        process = subprocess.Popen(["/usr/bin/time", "-o", usage.name, "-f", "%M %U %S", *command],   # command's
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
        tree_peak, stop = [0], threading.Event()

        def sample() -> None:
            root = psutil.Process(process.pid)
            while not stop.wait(0.1):
                try:
                    members = [root, *root.children(recursive=True)]
                    total = 0
                    for member in members:
                        try:
                            total += member.memory_info().rss
                        except psutil.Error:
                            pass
                except psutil.Error:
                    return
                tree_peak[0] = max(tree_peak[0], total)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, err = process.communicate()
        stop.set()
        sampler.join()
        wall = time.perf_counter() - started
        done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        kilobytes, user, system = usage.read().split()[-3:]
    return done, wall, int(kilobytes) / 1024, float(user) + float(system), tree_peak[0] / 2**20


def compaction_result(rows: int, repeats: int, work: Path, file_rows: int) -> dict:
    """``tabpipe monitor --since 7d --json`` over ``rows`` logged rows written ``file_rows`` a write, before and
    after ``tabpipe log compact``: wall seconds of each run (medians), the compaction's seconds and report."""
    import json
    import sys

    config = build_log_project(work, rows, "parquet", file_rows=file_rows)
    tabpipe = str(Path(sys.executable).with_name("tabpipe"))
    command = [tabpipe, "monitor", "--config", str(config), "--since", "7d", "--json"]

    def measured() -> tuple[list[float], dict, str]:
        walls, result = [], None
        for _ in range(repeats):
            done, wall, *_ = run_measured(command)
            if done.returncode not in (0, 3):
                raise SystemExit(f"tabpipe monitor failed ({done.returncode}):\n{done.stderr[-3000:]}")
            walls.append(wall)
            result = json.loads(done.stdout)
        return walls, result, done.stderr

    def files() -> int:
        return len(list((work / "registry" / "prediction_log").glob("hour=*/*.parquet")))

    def same(result: dict) -> dict:
        return {"decision": result["decision"], "window": {k: result["window"][k] for k in ("rows", "labelled_rows")},
                "metrics": result["metrics"], "psi": result["psi"], "multivariate": result["multivariate"]}

    files_before = files()
    before, first, warned = measured()
    started = time.perf_counter()
    done = subprocess.run([tabpipe, "log", "compact", "--config", str(config), "--older-than", "1min", "--json"],
                          capture_output=True, text=True)
    compact_s = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"tabpipe log compact failed:\n{done.stderr[-3000:]}")
    after, last, _ = measured()
    assert json.dumps(same(first), sort_keys=True) == json.dumps(same(last), sort_keys=True), "compaction changed a result"
    med = statistics.median
    return {"rows": rows, "file_rows": file_rows, "repeats": repeats, "before_s": med(before), "befores": before,
            "after_s": med(after), "afters": after, "compact_s": compact_s, "compaction": json.loads(done.stdout),
            "ratio": med(before) / med(after), "files_before": files_before,
            "warned": "tabpipe log compact" in warned}


def from_log_result(rows: int, repeats: int, work: Path, peer: bool = True, log_format: str = "sql") -> dict:
    """``tabpipe monitor --since 7d --json`` over ``rows`` logged rows: wall seconds, peak RSS and stage seconds
    of each run, the decision, and (``peer``, SQL log) the seconds of the previous read of the same window,
    checked equal."""
    import json
    import sys

    from tabpipe.history.logread import read_window
    from tabpipe.history.store import HistoryStore

    started = time.perf_counter()
    config = build_log_project(work, rows, log_format)
    build_s = time.perf_counter() - started
    command = [str(Path(sys.executable).with_name("tabpipe")), "monitor", "--config", str(config), "--since", "7d", "--json"]
    walls, stages, peaks, cpus, trees, result = [], [], [], [], [], None
    for _ in range(repeats):
        done, wall, peak, cpu, tree = run_measured(command)
        walls.append(wall)
        peaks.append(peak)
        trees.append(tree)
        cpus.append(cpu)
        if done.returncode not in (0, 3):
            raise SystemExit(f"tabpipe monitor failed ({done.returncode}):\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout)
        stages.append(result["stage_seconds"])
    assert result["window"]["rows"] == rows, result["window"]
    peer_times = []
    if peer and log_format == "sql":
        from tabpipe.config import load_settings
        from tabpipe.monitoring.monitor import parse_since
        from tabpipe.schema import coerce_frame

        schema = load_settings(config).schema_
        with HistoryStore.open(f"sqlite:///{work / 'registry' / 'history.sqlite'}", migrate_to=None) as store:
            since = parse_since("7d", pd.Timestamp.now(tz="UTC").to_pydatetime())
            for _ in range(max(1, repeats // 2)):
                started = time.perf_counter()
                old = pd.DataFrame.from_records(list(store.predictions(since=since)["inputs"]))
                peer_times.append(time.perf_counter() - started)
            new = read_window(store, schema, since=since, until=None, version=None)
            assert coerce_frame(old, schema, with_target=False)[0].equals(
                coerce_frame(new.rows, schema, with_target=False)[0])
    med = statistics.median
    return {"rows": rows, "repeats": repeats, "command": " ".join(["tabpipe", *command[1:]]),
            "wall_s": med(walls), "walls": walls, "build_s": build_s, "peak_rss_mb": med(peaks), "peaks_mb": peaks,
            "tree_peak_mb": med(trees), "tree_peaks_mb": trees,
            "cpu_s": med(cpus), "cpus_s": cpus,
            "log_format": log_format,
            "stages": {name: med(s.get(name, 0.0) for s in stages) for name in stages[0]},
            "sum_of_stages_s": med(sum(s.values()) for s in stages),
            "decision": result["decision"], "labelled_rows": result["window"]["labelled_rows"],
            "peer_read_s": med(peer_times) if peer_times else None, "peer_runs": len(peer_times)}


def from_log(rows: int, repeats: int, work: Path, log_format: str = "sql") -> None:
    """Print the median wall time, peak RSS and stages of ``tabpipe monitor --since 7d --json`` over ``rows``
    logged rows."""
    r = from_log_result(rows, repeats, work, log_format=log_format)
    print(f"`{r['command']}` over {rows:,} logged rows x 30 features in the {log_format} log "
          f"(decision {r['decision']}, {r['labelled_rows']:,} with outcomes); medians of {repeats}\n")
    print("| stage | seconds |")
    print("|---|---:|")
    for name, seconds in r["stages"].items():
        print(f"| {name} | {seconds:.3f} |")
    print(f"| sum of stages | {r['sum_of_stages_s']:.3f} |")
    print(f"| whole command (process start to exit) | {r['wall_s']:.3f} |")
    print(f"\nwall times: {', '.join(f'{w:.2f}' for w in r['walls'])} s; peak RSS of the command: "
          f"{', '.join(f'{p:.0f}' for p in r['peaks_mb'])} MB (median {r['peak_rss_mb']:.0f} MB); CPU seconds "
          f"(user + system, all threads and processes): {', '.join(f'{c:.1f}' for c in r['cpus_s'])} "
          f"(median {r['cpu_s']:.1f}); peak of the summed RSS of its processes (sampled every 0.1 s): "
          f"{', '.join(f'{t:.0f}' for t in r['tree_peaks_mb'])} MB (median {r['tree_peak_mb']:.0f} MB)")
    if r["peer_read_s"] is None:
        return
    print(f"\npeer: the previous read (store.predictions + from_records) of the same window: {r['peer_read_s']:.3f} s "
          f"(median of {r['peer_runs']}); the window is now read chunk by chunk inside schema_check_and_score")


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--full", action="store_true", help="also time whole monitoring runs (run_monitor)")
    ap.add_argument("--from-log", action="store_true",
                    help="time `tabpipe monitor --since 7d` over a store of logged rows (one --rows value)")
    ap.add_argument("--log-format", choices=("parquet", "sql"), default="parquet",
                    help="--from-log: the prediction log's format (monitoring.log.format)")
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="--from-log: where the project and store are built (reused if present; default: a temp dir)")
    ap.add_argument("--file-rows", type=int, default=None,
                    help="--from-log, Parquet log: write it this many rows a write (a file per write and hour)")
    ap.add_argument("--compact", action="store_true",
                    help="--from-log --file-rows: time the command before and after `tabpipe log compact`")
    args = ap.parse_args()
    if args.compact:
        if not (args.from_log and args.file_rows and len(args.rows) == 1):
            ap.error("--compact takes --from-log, --file-rows and one --rows value")
        with tempfile.TemporaryDirectory() as tmp:
            r = compaction_result(args.rows[0], args.repeats, Path(tmp) / "project", args.file_rows)
        c = r["compaction"]
        print(f"`tabpipe monitor --since 7d --json` over {r['rows']:,} logged rows written {r['file_rows']:,} rows a "
              f"write; medians of {r['repeats']}\n")
        print("| log | files | seconds | runs (s) |")
        print("|---|---:|---:|---|")
        print(f"| as written | {r['files_before']:,} | {r['before_s']:.2f} | {', '.join(f'{w:.2f}' for w in r['befores'])} |")
        print(f"| after `tabpipe log compact` | {r['files_before'] - c['files_before'] + c['files_after']:,} | "
              f"{r['after_s']:.2f} | {', '.join(f'{w:.2f}' for w in r['afters'])} |")
        print(f"\nratio (as written / compacted): {r['ratio']:.2f}x; `tabpipe log compact --older-than 1min` took "
              f"{r['compact_s']:.1f} s ({c['groups']} hour groups, {c['files_before']} files into {c['files_after']}, "
              f"{c['rows']:,} rows); results checked equal (decision, rows, metrics, PSI, multivariate); the "
              f"command {'warned' if r['warned'] else 'did not warn'} about small files before compaction")
        return
    if args.from_log:
        if len(args.rows) != 1:
            ap.error("--from-log takes one --rows value")
        if args.work_dir is not None:
            from_log(args.rows[0], args.repeats, args.work_dir, args.log_format)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                from_log(args.rows[0], args.repeats, Path(tmp) / "project", args.log_format)
        return
    schema = make_schema()
    train = make_rows(200_000, seed=0)
    profile = build_profile(train, schema, np.random.default_rng(0).random(1000), np.zeros(1000, int), 0.5)
    print(f"30 features ({N_NUMERIC} numeric, {N_CATEGORICAL} categorical); medians of {args.repeats} runs\n")
    print("| rows | tabpipe frame_psi (s) | pandas cut/value_counts (s) | speed-up | coerce_frame (s) |"
          + (" whole monitoring run (s) |" if args.full else ""))
    print("|---:|---:|---:|---:|---:|" + ("---:|" if args.full else ""))
    for n in args.rows:
        rows = make_rows(n, seed=1, shift=0.3)
        ours = frame_psi(profile["features"], rows)
        theirs = pandas_psi(profile["features"], rows)
        worst = max(abs(ours[k].value - theirs[k]) for k in theirs)
        assert worst < 1e-9, f"the two implementations disagree by {worst}"
        fast = median_seconds(lambda rows=rows: frame_psi(profile["features"], rows), args.repeats)
        slow = median_seconds(lambda rows=rows: pandas_psi(profile["features"], rows), args.repeats)
        check = median_seconds(lambda rows=rows: coerce_frame(rows, schema, with_target=False), max(1, args.repeats // 2))
        full = ""
        if args.full:
            with tempfile.TemporaryDirectory() as tmp:
                full = f" {full_run_seconds(schema, train, rows, max(1, args.repeats // 2), Path(tmp)):.2f} |"
        print(f"| {n:,} | {fast:.3f} | {slow:.3f} | {slow / fast:.1f}x | {check:.3f} |{full}")


if __name__ == "__main__":
    main()
