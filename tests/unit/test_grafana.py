"""docs/grafana-dashboard.json reads only metrics queuekit exports, and docs/grafana.md
describes every panel."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from queuekit.runtime.metrics import WorkerMetrics

DOCS = Path(__file__).resolve().parents[2] / "docs"


def exported_names() -> set[str]:
    metrics = WorkerMetrics()
    metrics.track(["q"])
    metrics.depth.labels("q", "waiting").set(0)
    return {sample.name for family in metrics.registry.collect() for sample in family.samples}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DOCS / "grafana-dashboard.json").read_text())
    return loaded


def test_every_query_reads_an_exported_metric() -> None:
    exported = exported_names()
    panels = dashboard()["panels"]
    assert len(panels) >= 10
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\bqueuekit_[a-z_]+", target["expr"]))
            assert used and used <= exported, (panel["title"], used - exported)
            assert 'queue=~"$queue"' in target["expr"], panel["title"]


def test_every_panel_is_described_and_the_layout_does_not_overlap() -> None:
    text = (DOCS / "grafana.md").read_text()
    cells: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        assert f"### {panel['title']}\n" in text, panel["title"]
        assert panel["description"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not mine & cells, panel["title"]
        cells |= mine
