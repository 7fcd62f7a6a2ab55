"""The model card as people read it: a self-contained HTML page, a plain-text summary for the terminal,
the differences between two versions' cards, and the card's JSON Schema (``model_card.schema.json``
next to this module). Pure functions of the card's JSON document (``tabpipe.training.card`` builds it).
Design notes: docs/model_card.md
"""
from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CARD_FORMAT = 1
SCHEMA_PATH = Path(__file__).with_name("model_card.schema.json")
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left;
vertical-align:top}th{background:#f3f3f3}.refused,.weak{background:#f8d0d0}.accepted{background:#d9f2d9}
.note{color:#555}"""


def card_schema() -> dict:
    """The JSON Schema every ``model_card.json`` satisfies."""
    return json.loads(SCHEMA_PATH.read_text())


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else "n/a"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _ci(entry: Mapping | None) -> str:
    """``0.8123 [0.7901, 0.8342]`` of a ``{"value", "ci"}`` entry."""
    if not entry or entry.get("value") is None:
        return "—"
    ci = entry.get("ci")
    return f"{entry['value']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def _rows(pairs: Mapping) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                               for k, v in pairs.items()) + "</table>"


def _grid(head: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        f"<tr class='{html.escape((classes or [''] * len(rows))[i])}'>"
        + "".join(f"<td>{html.escape(c if isinstance(c, str) else _fmt(c))}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows))
    return f"<table><tr>{cells}</tr>{body}</table>"


def render_html(card: Mapping) -> str:
    """The card as one self-contained HTML page (no script, no external file)."""
    title = f"Model card — {card['version']}"
    g, m, d = card["gate"], card["metrics"], card["data"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1 id='title'>{html.escape(title)}</h1>",
             f"<p>published {html.escape(_fmt(card['created_at']))} by training run {html.escape(card['run_id'])}</p>"]
    p = card["purpose"]
    parts.append("<h2 id='purpose'>Purpose</h2>" + _rows({
        "owner": p["owner"] or "not stated (model_card.owner in pipeline.yaml)",
        "intended use": p["intended_use"] or "not stated (model_card.intended_use in pipeline.yaml)"}))
    if p["limitations"]:
        parts.append("<ul id='limitations'>" + "".join(f"<li>{html.escape(x)}</li>" for x in p["limitations"]) + "</ul>")
    parts.append("<h2 id='model'>Model</h2>" + _rows({k: v for k, v in card["model"].items() if k != "features"}
                                                     | {"features": ", ".join(card["model"]["features"])}))
    parts.append("<h2 id='data'>Data</h2>" + _rows({"source": d["source"], "fingerprint (sha256)": d["fingerprint"],
                                                    "rows read": d["rows"], "training rows": d["train_rows"],
                                                    "test rows (untouched until evaluation)": d["test_rows"],
                                                    "rows dropped (schema)": d["rows_dropped"],
                                                    "drift against the previous version": d["drift"]}))
    intervals = m.get("intervals") or {}
    conf = f"{m['confidence']:.0%} bootstrap interval, {m['resamplings']} resamples" if m.get("confidence") else ""
    parts.append(f"<h2 id='metrics'>Test metrics</h2><p class='note'>{html.escape(conf)}</p>" + _rows(
        {k: (_ci(intervals[k]) if k in intervals else v) for k, v in m["test"].items()}))
    if card.get("calibration"):
        parts.append("<h2 id='calibration'>Calibration</h2>" + _rows(card["calibration"]))
    parts.append(f"<h2 id='gate'>Gate decision</h2><p class='{'accepted' if g['accepted'] else 'refused'}'>"
                 f"{'accepted' if g['accepted'] else 'refused'}: {html.escape(str(g['reason']))}</p>" + _rows({
                     "previous version": g["previous_version"] or "none (first model)",
                     "compared on": g["compared_rows"] or "all test rows",
                     f"new - previous {g['metric']}": _ci(g.get("difference")),
                     "previous metrics": g["previous_metrics"]}))
    seg = card.get("segments")
    if seg and seg.get("segments"):
        parts.append(f"<h2 id='segments'>Segments ({html.escape(seg['metric'])})</h2>"
                     f"<p class='note'>{html.escape(seg['rule'])}</p>")
        parts.append(_grid(["column", "segment", "rows", "positives", "new", "previous", "new - previous", "status"],
                           [[s["column"], s["segment"], s["rows"], s["positives"], _ci(s["new"]), _ci(s["production"]),
                             _ci(s["difference"]), "REFUSED" if s["refused"] else s["status"]] for s in seg["segments"]],
                           ["refused" if s["refused"] else "" for s in seg["segments"]]))
    ws = card.get("worst_slices")
    if ws:
        parts.append(f"<h2 id='worst-slices'>Weakest slices ({html.escape(ws['metric'])}, overall "
                     f"{_fmt(ws['overall'])})</h2><p class='note'>{html.escape(ws['method'])}; {ws['weak']} of "
                     f"{ws['tested']} slices significantly weaker</p>")
        parts.append(_grid(["column", "slice", "rows", "positives", "value", "slice - overall", "p", "q (BH)", "weak"],
                           [[s["column"], s["slice"], s["rows"], s["positives"], s["value"],
                             _ci({"value": s["difference"], "ci": s["ci"]}), s["p_value"], s["q_value"], s["weak"]]
                            for s in ws["slices"]], ["weak" if s["weak"] else "" for s in ws["slices"]]))
    w = card["expectation_warnings"]
    parts.append("<h2 id='warnings'>Expectation warnings in training</h2>" + _rows(
        {"rows kept although they broke an expectation": w["rows_with_warnings"],
         **{f"{c}: {rule}": n for c, rules in w["by_column"].items() for rule, n in rules.items()},
         **{f"integrity: {k}": v for k, v in w["integrity"].items()}}))
    s = card["sensitive_columns"]
    parts.append("<h2 id='sensitive'>Sensitive columns</h2>" + _rows({"columns": ", ".join(s["columns"]) or "none"})
                 + "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in s["handling"]) + "</ul>")
    if card.get("evaluation"):
        parts.append("<h2 id='evaluation'>Other evaluation results</h2>" + _rows(card["evaluation"]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_card_html(path: Path, card: Mapping) -> Path:
    """Write ``render_html(card)`` to ``path``; returns it."""
    Path(path).write_text(render_html(card))
    return Path(path)


def render_text(card: Mapping) -> str:
    """A terminal summary of the card (``tabpipe models card``)."""
    g, m, p, d = card["gate"], card["metrics"], card["purpose"], card["data"]
    intervals = m.get("intervals") or {}
    lines = [f"model card {card['version']} (run {card['run_id']}, published {card['created_at']})",
             f"owner: {p['owner'] or '-'}", f"intended use: {p['intended_use'] or '-'}"]
    lines += [f"limitation: {x}" for x in p["limitations"]]
    lines += [f"model: {card['model']['candidate']}, threshold {card['model']['threshold']:.4f}, "
              f"{len(card['model']['features'])} features",
              f"data: {d['rows']} rows (train {d['train_rows']}, test {d['test_rows']}), fingerprint "
              f"{str(d['fingerprint'])[:16]}..., source {json.dumps(d['source'])}"]
    lines += [f"test {k}: {_ci(intervals[k]) if k in intervals else _fmt(v)}" for k, v in m["test"].items()]
    lines += [f"calibration {k}: {_fmt(v)}" for k, v in (card.get("calibration") or {}).items()]
    lines.append(f"gate: {'accepted' if g['accepted'] else 'refused'} against {g['previous_version'] or 'no previous version'}: "
                 f"{g['reason']}")
    seg = card.get("segments") or {}
    for s in seg.get("segments") or []:
        lines.append(f"segment {s['column']}={s['segment']} ({s['rows']} rows): new {_ci(s['new'])}, previous "
                     f"{_ci(s['production'])}, diff {_ci(s['difference'])} [{'REFUSED' if s['refused'] else s['status']}]")
    ws = card.get("worst_slices") or {}
    for s in ws.get("slices") or []:
        lines.append(f"slice {s['column']}={s['slice']} ({s['rows']} rows): {ws['metric']} {_fmt(s['value'])} "
                     f"(overall {_fmt(ws['overall'])}), q={s['q_value']:.3g}{' WEAK' if s['weak'] else ''}")
    w = card["expectation_warnings"]
    lines.append(f"expectation warnings: {w['rows_with_warnings']} rows"
                 + "".join(f"; {c}: {json.dumps(r)}" for c, r in w["by_column"].items()))
    lines.append(f"sensitive columns: {', '.join(card['sensitive_columns']['columns']) or 'none'}")
    return "\n".join(lines)


def card_diff(old: Mapping, new: Mapping) -> list[tuple[str, Any, Any]]:
    """(dotted path, old value, new value) of every leaf that differs between two cards, in path order."""
    out: list[tuple[str, Any, Any]] = []

    def walk(a, b, path):
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
                isinstance(x, Mapping) for x in a + b):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}[{i}]")
        elif a != b:
            out.append((path, a, b))
    walk(old, new, "")
    return out
