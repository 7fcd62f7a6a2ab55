"""The flow chart in ``Flow_Chart/``, generated from the code so it cannot drift from it.

The training flow is drawn from ``tabpipe.stages`` (the pipeline runs exactly those stages, a test holds it
to that) and the scheduled jobs from the DAG specs that ``tabpipe.orchestration.airflow`` turns into
Airflow DAGs. ``tabpipe flowchart`` writes Mermaid source (``.mmd``, rendered by GitHub inside the ``.md``)
and a self-contained SVG drawn here with a plain layered layout (deterministic: same code, same bytes).
A test fails when the committed files differ from freshly generated ones.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from html import escape
from pathlib import Path

from tabpipe.orchestration.spec import DagSpec, InferenceJob, OrchestrationSection, dag_specs
from tabpipe.stages import DESCRIPTIONS, STAGES

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN, TITLE_H = 190, 74, 46, 26, 20, 34
WRAP = 27


@dataclass(frozen=True)
class Graph:
    """One chart: a title, its nodes (id, label) and directed edges."""
    title: str
    nodes: tuple[tuple[str, str], ...]          # (id, label)
    edges: tuple[tuple[str, str], ...]


def graphs(config_path: str | Path) -> list[Graph]:
    """The training flow and the three scheduled jobs (batch inference drawn even when not enabled)."""
    flow = Graph(
        "Training flow (tabpipe train)",
        (("source", "data source: file / MongoDB / SQL"),
         *((s, f"{s}: {DESCRIPTIONS[s]}") for s in STAGES),
         ("registry", "registry: signed versions, production pointer"), ("service", "prediction service")),
        (("source", STAGES[0]), *zip(STAGES, STAGES[1:]), (STAGES[-1], "registry"), ("registry", "service")))
    section = OrchestrationSection(inference=InferenceJob(enabled=True, input=Path("new_rows.parquet")))
    specs: dict[str, DagSpec] = dag_specs(config_path, section)
    out = [flow]
    for spec in specs.values():
        title = f"Airflow DAG {spec.dag_id} ({spec.schedule or 'on demand'}, {spec.job.retries} retries)"
        out.append(Graph(title, tuple((t.task_id, f"{t.task_id}: {t.doc}") for t in spec.tasks), spec.edges))
    return out


def mermaid(charts: list[Graph]) -> str:
    """Mermaid ``flowchart LR`` source with one subgraph per chart."""
    lines = ["flowchart LR"]
    for i, g in enumerate(charts):
        lines.append(f'  subgraph g{i} ["{g.title}"]')
        lines.append("    direction LR")
        for node, label in g.nodes:
            lines.append(f'    g{i}_{node}["{label.replace(chr(34), chr(39))}"]')
        lines.extend(f"    g{i}_{a} --> g{i}_{b}" for a, b in g.edges)
        lines.append("  end")
    return "\n".join(lines) + "\n"


def _layers(g: Graph) -> dict[str, tuple[int, int]]:
    """(column, row) per node: column = longest path from a root, row = order within the column."""
    depth = {n: 0 for n, _ in g.nodes}
    for _ in g.nodes:
        for a, b in g.edges:
            depth[b] = max(depth[b], depth[a] + 1)
    rows: dict[int, int] = {}
    place = {}
    for node, _ in g.nodes:
        col = depth[node]
        place[node] = (col, rows.get(col, 0))
        rows[col] = rows.get(col, 0) + 1
    return place


def svg(charts: list[Graph]) -> str:
    """A self-contained SVG of the charts, one below the other, each laid out in layers."""
    parts, y0, width = [], MARGIN, 0
    for g in charts:
        place = _layers(g)
        n_cols = max(c for c, _ in place.values()) + 1
        n_rows = max(r for _, r in place.values()) + 1
        width = max(width, 2 * MARGIN + n_cols * BOX_W + (n_cols - 1) * GAP_X)
        parts.append(f'<text x="{MARGIN}" y="{y0 + 20}" class="title">{escape(g.title)}</text>')
        top = y0 + TITLE_H

        def box(node, place=place, top=top):
            col, row = place[node]
            return MARGIN + col * (BOX_W + GAP_X), top + row * (BOX_H + GAP_Y)

        for a, b in g.edges:
            (xa, ya), (xb, yb) = box(a), box(b)
            parts.append(f'<path d="M{xa + BOX_W},{ya + BOX_H // 2} C{xa + BOX_W + GAP_X // 2},{ya + BOX_H // 2} '
                         f'{xb - GAP_X // 2},{yb + BOX_H // 2} {xb - 4},{yb + BOX_H // 2}" class="edge"/>')
        for node, label in g.nodes:
            x, y = box(node)
            parts.append(f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="8" class="node"/>')
            for k, line in enumerate(textwrap.wrap(label, WRAP)[:4]):
                parts.append(f'<text x="{x + 8}" y="{y + 18 + 15 * k}">{escape(line)}</text>')
        y0 = top + n_rows * (BOX_H + GAP_Y) + MARGIN
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y0}" viewBox="0 0 {width} {y0}">\n'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>\n'
            '<style>text{font:12px sans-serif;fill:#222}.title{font:bold 15px sans-serif}'
            '.node{fill:#eef4fb;stroke:#3b6ea5;stroke-width:1.5}'
            '.edge{fill:none;stroke:#555;stroke-width:1.5;marker-end:url(#arrow)}</style>\n'
            f'<rect width="{width}" height="{y0}" fill="#fff"/>\n')
    return head + "\n".join(parts) + "\n</svg>\n"


def markdown(mmd: str) -> str:
    """The generated ``.md`` page around the Mermaid source ``mmd``."""
    return ("# tabpipe flow chart\n\nGenerated by `tabpipe flowchart` from the pipeline's stage list "
            "(`src/tabpipe/stages.py`) and the DAG specs (`src/tabpipe/orchestration/spec.py`); do not edit by hand "
            "(a test compares these files with freshly generated ones). Picture: [training_flow.svg](training_flow.svg).\n\n"
            f"```mermaid\n{mmd}```\n")


def write(out_dir: Path, config_path: str | Path) -> list[Path]:
    """Write training_flow.mmd / .svg / .md into ``out_dir``; returns the paths."""
    charts = graphs(config_path)
    mmd = mermaid(charts)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"training_flow.mmd": mmd, "training_flow.svg": svg(charts), "training_flow.md": markdown(mmd)}
    for name, text in files.items():
        (out_dir / name).write_text(text)
    return [out_dir / n for n in files]
