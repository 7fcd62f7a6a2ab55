"""Flow_Chart/ is generated from the code (stage list + DAG specs): the committed files must match."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from helpers import REPO

from tabpipe.orchestration.flowchart import graphs, write
from tabpipe.stages import STAGES

COMMITTED = REPO / "Flow_Chart"
CONFIG = REPO / "config" / "pipeline.yaml"


def test_committed_flow_chart_equals_a_fresh_one(tmp_path):
    written = write(tmp_path, CONFIG)
    for fresh in written:
        committed = COMMITTED / fresh.name
        assert committed.exists(), f"{committed} missing: run `tabpipe flowchart`"
        assert committed.read_text() == fresh.read_text(), f"{committed} is stale: run `tabpipe flowchart`"


def test_chart_shows_every_stage_and_dag_task(tmp_path):
    charts = graphs(CONFIG)
    flow_nodes = [n for n, _ in charts[0].nodes]
    assert [n for n in flow_nodes if n in STAGES] == list(STAGES)
    titles = " ".join(g.title for g in charts)
    assert all(f"tabpipe_{kind}" in titles for kind in ("training", "inference", "monitoring"))
    svg = next(p for p in write(tmp_path, CONFIG) if p.suffix == ".svg")
    root = ET.parse(svg).getroot()                                   # well-formed SVG
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert all(stage in texts for stage in STAGES)
    assert len(list(root.iter("{http://www.w3.org/2000/svg}rect"))) == 1 + sum(len(g.nodes) for g in charts)
