"""tabpipe's headline figures beside their goals, in one short run: ``make bench-quick``
(``.venv/bin/python -m benchmarks.quick``; needs ``wrk``; about 5 minutes on an idle 2-core machine).

Every figure is measured in the same run as a floor or peer (the same work done the usual way, or the bare
framework cost), on a project made the way a user makes one: ``tabpipe data generate`` (20,000 rows),
``tabpipe init`` (its default model.yaml, search and ensemble settings) and ``tabpipe train`` with a small
``training.time_budget_s`` (``--train-budget``). Rows:

1. per-row cost of the service's compiled scorer (schema check + compiled model, in process) vs the saved
   model's own ``predict_proba`` on a one-row DataFrame (``benchmarks/task.py per_row``);
2. one-row POST /predict through ``tabpipe serve`` (gunicorn, shipped settings): p50/p99 from ``wrk`` with one
   connection, requests/s with ``wrk`` 2 threads x 16 connections, and GET /health p50, each beside a bare
   Flask echo app under the same gunicorn settings (``benchmarks/bare_app.py``), the framework's floor;
3. POST /predict/csv with 100,000 rows, end to end (after two warm-up uploads per server, as /predict is warmed
   up), beside the bare app echoing the same upload;
4. ``tabpipe train`` wall seconds and test ROC-AUC vs the usual recipe (``benchmarks/recipe.py``) on the same
   rows, schema and split; the goal is on the ratio (issue #10: >= 5x the recipe), so the recipe is stopped
   once it has taken 5x tabpipe's time (the ratio is then a lower bound);
5. ``tabpipe.drift.rules.check_drift`` on 100,000 x 30 vs 100,000 x 30 (mean_shift scenario) vs evidently's
   DataDriftPreset on the same frames;
6. ``tabpipe monitor --since 7d`` over 100,000 logged rows (``benchmarks/monitor_bench.py --from-log``), beside
   the previous way of reading the same window.

A figure more than 50 % past its goal (above 1.5x a "<=" goal, below goal / 1.5 for a ">=" goal) fails the
run: exit 1, and the failing figures are named. Writes the table to stdout and everything to
``benchmarks/results/quick.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import requests
import yaml

from benchmarks.harness import ROOT, child_env, git_commit, log, machine_info, measure
from benchmarks.loadgen import csv_seconds, free_port, ready, start_gunicorn, stop, wrk
from benchmarks.monitor_bench import from_log_result

RESULTS = ROOT / "benchmarks" / "results" / "quick.json"
TRAIN_RATIO_GOAL = 5.0


@dataclass
class Figure:
    """One row of the table: tabpipe's figure, its goal, the same run's floor or peer, and their ratio."""

    key: str
    figure: str
    unit: str
    value: float | None
    goal: float | None = None
    goal_op: str = "<="                 # "<=": at most the goal; ">=": at least
    goal_on: str = "value"              # what the goal applies to: "value" or "ratio"
    goal_source: str = ""
    peer: float | None = None
    peer_label: str = ""
    ratio: float | None = None
    ratio_label: str = ""
    ratio_lower_bound: bool = False     # the peer was stopped: the ratio is at least this
    notes: str = ""
    details: dict = field(default_factory=dict)   # the raw runs, for the JSON only
    status: str = field(default="", init=False)

    def judge(self) -> str:
        """ok, over goal, FAIL (more than 50 % past the goal), no goal, or not settled (a stopped peer)."""
        measured = self.ratio if self.goal_on == "ratio" else self.value
        if self.goal is None or measured is None:
            self.status = "no goal" if self.goal is None else "not measured"
        elif self.goal_op == "<=":
            self.status = "ok" if measured <= self.goal else "over goal" if measured <= 1.5 * self.goal else "FAIL"
        elif measured >= self.goal * (1 - 1e-9):   # a peer stopped at goal x tabpipe's time gives the goal itself
            self.status = "ok"
        elif self.ratio_lower_bound:                # stopped before the goal: only a bound is known
            self.status = "not settled"
        else:
            self.status = "over goal" if measured >= self.goal / 1.5 else "FAIL"
        return self.status


def fmt_auc(x: float | None) -> str:
    """A ROC-AUC to 4 places, or a dash."""
    return "—" if x is None else f"{x:.4f}"


def fmt(x: float | None, unit: str = "") -> str:
    """A figure with 3 significant-ish digits and thousands separators, or a dash."""
    if x is None:
        return "—"
    digits = 3 if abs(x) < 1 else 2 if abs(x) < 10 else 1 if abs(x) < 100 else 0
    return f"{x:,.{digits}f}{unit}"


# ------------------------------------------------------------------ the project: data, init, train


def tabpipe_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run the ``tabpipe`` command of this interpreter's environment; fail loudly."""
    done = subprocess.run([str(Path(sys.executable).with_name("tabpipe")), *args], capture_output=True, text=True,
                          env=child_env(), **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"tabpipe {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done


def make_project(tmp: Path, rows: int, budget: float) -> tuple[Path, Path]:
    """``tabpipe data generate`` + ``tabpipe init`` (its defaults), with ``time_budget_s`` lowered to ``budget``."""
    data, project = tmp / "data.csv", tmp / "project"
    tabpipe_cli("data", "generate", "--rows", str(rows), "--seed", "11", "--out", str(data))
    tabpipe_cli("init", "--data", str(data), "--target", "fault_flag", "--dir", str(project))
    config = project / "pipeline.yaml"
    doc = yaml.safe_load(config.read_text())
    doc["training"]["time_budget_s"] = budget
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return data, config


def bench_project(project: Path | None, keep: Path | None, tmp: Path, budget: float) -> tuple[Path, Path]:
    """(folder, its pipeline.yaml) of the project a benchmark measures: ``project`` as given (a folder holding
    ``pipeline.yaml``, or ``project/pipeline.yaml``, and ``data.csv``), else one made by ``make_project`` on
    20,000 rows and trained, in ``keep`` (kept) or ``tmp``."""
    folder = project
    if folder is None:
        folder = keep or tmp
        folder.mkdir(parents=True, exist_ok=True)
        make_project(folder, 20_000, budget)
        train(folder / "project" / "pipeline.yaml")
    return folder, folder / "project" / "pipeline.yaml" if (folder / "project").is_dir() else folder / "pipeline.yaml"


def train(config: Path) -> dict:
    """Wall seconds of ``tabpipe train`` (process start to exit) and the test ROC-AUC it prints."""
    started = time.perf_counter()
    done = tabpipe_cli("train", "--config", str(config))
    seconds = time.perf_counter() - started
    auc = re.search(r"test roc_auc=([\d.]+)", done.stdout)
    final = re.findall(r"final model: (.+?) roc_auc=", done.stderr.replace("\n", " "))
    return {"seconds": seconds, "test_roc_auc": float(auc.group(1)) if auc else None,
            "final_model_log": re.sub(r"\s+", " ", final[-1]).strip() if final else None}


# ------------------------------------------------------------------ serving


def json_record(data: Path, features: list[str], row: int = 3) -> dict:
    """One row of ``data`` as a JSON client sends it (missing values as null)."""
    frame = pd.read_csv(data, skiprows=range(1, row + 1), nrows=1)[features]
    return json.loads(frame.to_json(orient="records", date_format="iso"))[0]


def serve(config: Path, data: Path, args) -> list[Figure]:
    """Rows 2 and 3: ``tabpipe serve`` vs the bare echo app, alternating, same settings, same client."""
    ports = {"tabpipe": free_port(), "bare": free_port()}
    env = child_env(GUNICORN_LOG_LEVEL="warning")
    servers = {}
    try:
        servers["tabpipe"] = ready(subprocess.Popen(
            [str(Path(sys.executable).with_name("tabpipe")), "serve", "--config", str(config), "--port",
             str(ports["tabpipe"])], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            f"http://127.0.0.1:{ports['tabpipe']}/health")
        servers["bare"] = start_gunicorn("benchmarks.bare_app:app", ports["bare"], env, probe="/health",
                                         method="GET", access_log=True)
        url = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
        model = requests.get(f"{url['tabpipe']}/model", timeout=30).json()
        features = list(model["schema"]["features"])
        record = json_record(data, features)
        answer = requests.post(f"{url['tabpipe']}/predict", json=record, timeout=30)
        answer.raise_for_status()
        for name in servers:        # warm up: lazy imports, first connections
            wrk(f"{url[name]}/predict", 2, 1, body=record)
        one, health, load = {k: [] for k in servers}, {k: [] for k in servers}, {k: [] for k in servers}
        for _ in range(args.serve_repeats):
            for name in servers:
                one[name].append(wrk(f"{url[name]}/predict", args.latency_seconds, 1, body=record))
                health[name].append(wrk(f"{url[name]}/health", max(2, args.latency_seconds // 2), 1))
                load[name].append(wrk(f"{url[name]}/predict", args.load_seconds, 16, threads=2, body=record))
                log(f"serve {name}: p50 {one[name][-1]['p50_ms']:.3f} ms, {load[name][-1]['rps']:.0f} req/s")
        base = pd.read_csv(data)[features]
        big = pd.concat([base] * (args.csv_rows // len(base) + 1), ignore_index=True).head(args.csv_rows)
        payload = big.to_csv(index=False).encode()
        csv = {k: [] for k in servers}
        for port in ports.values():   # warm up, as for /predict: each of the 2 workers' first upload (lazy imports)
            for _ in range(2):
                csv_seconds(port, payload)
        for _ in range(args.serve_repeats):
            for name, port in ports.items():
                seconds, answered = csv_seconds(port, payload)
                if len(answered) != args.csv_rows:
                    raise SystemExit(f"{name} answered {len(answered)} rows of {args.csv_rows}")
                if name == "tabpipe" and "probability" not in answered:
                    raise SystemExit("POST /predict/csv answered no probability column")
                csv[name].append(seconds)
        log(f"csv: tabpipe {min(csv['tabpipe']):.2f} s, bare {min(csv['bare']):.2f} s")
    finally:
        for proc in servers.values():
            stop(proc)
    med = statistics.median

    def m(runs: dict, name: str, key: str) -> float:
        return med(r[key] for r in runs[name])
    errors = sum(r["non_2xx"] for runs in (one, health, load) for r in runs["tabpipe"])
    source = "issue #18 (#19 targets the serving path)"
    p50, p99, rps = (m(one, "tabpipe", "p50_ms"), m(one, "tabpipe", "p99_ms"), m(load, "tabpipe", "rps"))
    bare = {"p50": m(one, "bare", "p50_ms"), "p99": m(one, "bare", "p99_ms"), "rps": m(load, "bare", "rps"),
            "health": m(health, "bare", "p50_ms")}
    health_p50 = m(health, "tabpipe", "p50_ms")
    note = f"wrk, loopback; non-2xx responses: {errors}"
    raw = {"one_connection": one, "health": health, "wrk_16_connections": load, "csv_seconds": csv}
    return [
        Figure("predict_p50", "POST /predict, 1 row, 1 connection, p50", "ms", p50, 0.5, goal_source=source,
               peer=bare["p50"], peer_label="bare gunicorn+Flask echo", ratio=p50 / bare["p50"],
               ratio_label="x floor", notes=note, details=raw),
        Figure("predict_p99", "POST /predict, 1 row, 1 connection, p99", "ms", p99, 2.0, goal_source=source,
               peer=bare["p99"], peer_label="bare gunicorn+Flask echo", ratio=p99 / bare["p99"],
               ratio_label="x floor", notes=note),
        Figure("predict_rps", "POST /predict, 1 row, wrk 2 threads x 16 connections", "req/s", rps, 4000.0, ">=",
               goal_source=source, peer=bare["rps"], peer_label="bare gunicorn+Flask echo",
               ratio=rps / bare["rps"], ratio_label="x floor", notes=note),
        Figure("health_p50", "GET /health, 1 connection, p50 (goal: <= 1.5x the floor)", "ms", health_p50, 1.5,
               goal_on="ratio", goal_source="issue #18", peer=bare["health"], peer_label="bare GET /health",
               ratio=health_p50 / bare["health"], ratio_label="x floor"),
        Figure("predict_csv", f"POST /predict/csv, {args.csv_rows:,} rows, end to end", "s",
               med(csv["tabpipe"]), 1.0, goal_source="issue #18", peer=med(csv["bare"]),
               peer_label="bare app echoing the same upload", ratio=med(csv["tabpipe"]) / med(csv["bare"]),
               ratio_label="x floor", notes=f"{len(payload) / 1e6:.1f} MB of CSV; timed after 2 warm-up uploads per server"),
    ]


# ------------------------------------------------------------------ main


def table(figures: list[Figure]) -> str:
    """The Markdown table of the figures."""
    lines = ["| figure | tabpipe | goal | floor/peer | ratio | status |", "|---|---:|---:|---:|---:|---|"]
    for f in figures:
        unit = f" {f.unit}" if f.unit else ""
        if f.goal is None:
            goal = "—"
        elif f.goal_on == "ratio":
            goal = f"{f.goal_op} {fmt(f.goal)}{f.ratio_label}"
        else:
            goal = f"{f.goal_op} {fmt(f.goal)}{unit}"
        bound = "≥ " if f.ratio_lower_bound else ""
        peer = f"{bound}{fmt(f.peer)}{unit} ({f.peer_label})" if f.peer is not None else (f.peer_label or "—")
        ratio = bound + fmt(f.ratio) + f.ratio_label if f.ratio is not None else "—"
        status = "FAIL >50% past goal" if f.status == "FAIL" else f.status
        lines.append(f"| {f.figure} | {fmt(f.value)}{unit} | {goal} | {peer} | {ratio} | {status} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quick", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000, help="rows of the generated training data")
    ap.add_argument("--train-budget", type=float, default=20, help="training.time_budget_s of the project")
    ap.add_argument("--serve-repeats", type=int, default=1)
    ap.add_argument("--latency-seconds", type=int, default=5, help="wrk seconds per 1-connection latency run")
    ap.add_argument("--load-seconds", type=int, default=10, help="wrk seconds per 16-connection run")
    ap.add_argument("--csv-rows", type=int, default=100_000)
    ap.add_argument("--drift-rows", type=int, default=100_000)
    ap.add_argument("--monitor-rows", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed (make bench-quick installs it through scripts/test_deps.sh; or apt-get install wrk)")
    started, when = time.perf_counter(), datetime.now(timezone.utc)
    machine, commit = machine_info(), git_commit()
    log(f"bench-quick at {commit}, load average {machine['load_average']}")
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="tabpipe-bench-quick-") as tmp_name:
        tmp = Path(tmp_name)
        data, config = make_project(tmp, args.rows, args.train_budget)
        log("tabpipe train ...")
        trained = train(config)
        log(f"tabpipe train {trained['seconds']:.1f} s, test ROC-AUC {trained['test_roc_auc']}")

        scored = measure("per_row", config=str(config), data=str(data))
        model = {"version": scored["version"], "candidate": scored["candidate"], "estimator": scored["estimator"],
                 "final_model_log": trained["final_model_log"],
                 "how": f"tabpipe init defaults (src/tabpipe/defaults/model.yaml), tabpipe train on {args.rows:,} "
                        f"generated rows (tabpipe data generate --seed 11), training.time_budget_s "
                        f"{args.train_budget:g}"}
        log(f"per row: compiled {scored['compiled_us']:.0f} µs, own {scored['own_us']:.0f} µs ({model['candidate']})")
        figures.append(Figure(
            "compiled_per_row", "compiled scorer, 1 checked record in process", "µs/row", scored["compiled_us"], 100.0,
            goal_source="issue #18", peer=scored["own_us"], peer_label="the model's own predict_proba, 1-row frame",
            ratio=scored["own_us"] / scored["compiled_us"], ratio_label="x faster",
            notes=f"mean over {scored['records']} records (predict_proba: {scored['own_records']}); "
                  f"max |compiled - predict_proba| {scored['max_abs_diff']:.1e}; "
                  f"estimator compiled: {scored['compiled_estimator']}", details=scored))

        figures += serve(config, data, args)

        ours = [measure("drift", rows=args.drift_rows, impl="tabpipe", scenario="mean_shift") for _ in range(2)]
        theirs = measure("drift", rows=args.drift_rows, impl="evidently", scenario="mean_shift")
        drift_s = statistics.median(r["seconds"] for r in ours)
        agree = sum(ours[0]["verdicts"].get(c) == v for c, v in theirs["verdicts"].items())
        log(f"drift: tabpipe {drift_s:.2f} s, evidently {theirs['seconds']:.2f} s")
        figures.append(Figure(
            "drift", f"check_drift, {args.drift_rows:,} x 30 vs {args.drift_rows:,} x 30", "s", drift_s, 3.0,
            goal_source="BENCHMARKS.md drift section (issue #10: <= 3 s in process)", peer=theirs["seconds"],
            peer_label="evidently DataDriftPreset, same frames", ratio=theirs["seconds"] / drift_s,
            ratio_label="x faster", notes=f"median of {len(ours)}; verdicts agreeing with evidently: "
                                          f"{agree} / {len(theirs['verdicts'])}",
            details={"tabpipe_seconds": [r["seconds"] for r in ours], "evidently_seconds": theirs["seconds"],
                     "peak_rss_mb": {"tabpipe": max(r["peak_rss_mb"] for r in ours), "evidently": theirs["peak_rss_mb"]}}))

        log("tabpipe monitor ...")
        mon = from_log_result(args.monitor_rows, 1, tmp / "monitor", peer=True)
        read = mon["stages"].get("read")
        log(f"monitor: {mon['wall_s']:.1f} s (read {read:.2f} s, previous read {mon['peer_read_s']:.2f} s)")
        figures.append(Figure(
            "monitor", f"tabpipe monitor --since 7d, {args.monitor_rows:,} logged rows x 30, whole command",
            "s", mon["wall_s"], goal_source="no goal stated (BENCHMARKS.md, issue #8)",
            peer=mon["peer_read_s"], peer_label=f"previous read of the window; read now {fmt(read)} s",
            ratio=mon["peer_read_s"] / read if read else None, ratio_label="x faster read",
            notes="stages: " + ", ".join(f"{k} {v:.2f}" for k, v in mon["stages"].items()) +
                  f"; decision {mon['decision']}; store built in {mon['build_s']:.0f} s (not timed)", details=mon))

        cap = TRAIN_RATIO_GOAL * trained["seconds"]
        log(f"usual recipe (stopped after {cap:.0f} s) ...")
        recipe = measure("train", rows=args.rows, impl="recipe", data=str(data),
                         schema=str(config.parent / "schema.yaml"),
                         split_seed=yaml.safe_load(config.read_text())["run"]["seed"], timeout=cap)
        stopped = bool(recipe.get("timed_out"))
        log(f"recipe {recipe['seconds']:.1f} s{' (stopped)' if stopped else ''}")
        figures.insert(-2, Figure(
            "train", f"tabpipe train, {args.rows:,} rows (wall s)", "s", trained["seconds"], TRAIN_RATIO_GOAL, ">=",
            goal_on="ratio", goal_source="issue #10 (BENCHMARKS.md): >= 5x the usual recipe, same rows",
            peer=recipe["seconds"],
            peer_label="usual recipe, stopped" if stopped else "usual recipe, benchmarks/recipe.py",
            ratio=recipe["seconds"] / trained["seconds"], ratio_label="x faster", ratio_lower_bound=stopped,
            notes=f"test ROC-AUC tabpipe {fmt_auc(trained['test_roc_auc'])}, recipe "
                  f"{'— (stopped)' if stopped else fmt_auc(recipe['test_roc_auc'])} (same test rows); recipe configurations "
                  f"{recipe.get('configurations', '—')}; training.time_budget_s {args.train_budget:g}; the recipe is "
                  f"stopped at {TRAIN_RATIO_GOAL:g}x tabpipe's seconds", details={"tabpipe": trained, "recipe": recipe}))
    for f in figures:
        f.judge()
    failed = [f.key for f in figures if f.status == "FAIL"]
    over = [f.key for f in figures if f.status == "over goal"]
    code = 1 if failed else 0
    load_end = [round(x, 2) for x in os.getloadavg()]
    seconds = time.perf_counter() - started
    command = "make bench-quick" + (f" BENCH_ARGS='{' '.join(sys.argv[1:])}'" if sys.argv[1:] else "")
    print(f"\n## tabpipe bench-quick — {when:%Y-%m-%d %H:%M} UTC, commit {commit}\n")
    print(f"Machine: {machine['nproc']} cores ({machine['cpu']}), {machine['memory_gib']:g} GiB RAM, "
          f"Python {machine['python']}, host {machine['host']}; load average {machine['load_average'][0]:.2f} "
          f"at start, {load_end[0]:.2f} at end. Command: `{command}` ({seconds:.0f} s).\n")
    print(f"Model: {model['final_model_log'] or model['candidate']} ({model['estimator']}, {model['version']}); "
          f"{model['how']}.\n")
    print(table(figures))
    print()
    for f in figures:
        if f.notes:
            print(f"- {f.key}: {f.notes}")
    print(f"\nFAIL (> 50 % past goal): {', '.join(failed) or 'none'}; over goal: {', '.join(over) or 'none'}; "
          f"exit {code}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date_utc": when.isoformat(timespec="seconds"), "commit": commit,
        "machine": {**{k: v for k, v in machine.items() if k != "load_average"},
                    "load_average_start": machine["load_average"], "load_average_end": load_end},
        "command": command, "seconds": round(seconds, 1), "model": model,
        "status_rule": "ok: goal met; over goal: within 50 % of it; FAIL: more than 50 % past it "
                       "('<=' goal: value > 1.5 x goal; '>=' goal: value < goal / 1.5)",
        "figures": [asdict(f) for f in figures], "failed": failed, "over_goal": over, "exit_code": code,
    }, indent=2, default=str) + "\n")
    log(f"wrote {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
