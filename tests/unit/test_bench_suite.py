"""The benchmark suite measures a run again, for every side, when a side failed in it: one
stall of one side's process does not cost every side that run's values, and the report
says which runs were measured twice; a failure that happens again stands."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from benchmarks.report import Environment, render, results_table
from benchmarks.results import ImplResult, SuiteOptions, SuiteResult
from benchmarks.suite import Suite
from benchmarks.tables import per_run_table


class _Queues:
    deleted: list[str]

    def __init__(self) -> None:
        self.deleted = []

    async def delete_queue(self, queue: str) -> None:
        self.deleted.append(queue)


def _suite(keys: list[str]) -> tuple[Suite, list[Any]]:
    impls = [SimpleNamespace(key=key, label=key.upper()) for key in keys]
    options = SuiteOptions(jobs=10, runs=1, latency_samples=5, rss_checkpoints=(10,))
    suite = Suite("redis://127.0.0.1:1/0", options, impls, [])  # type: ignore[arg-type]
    suite._redis = _Queues()  # type: ignore[assignment]
    return suite, impls


async def _measure_with(suite: Suite, impls: list[Any], failures: dict[str, int]) -> None:
    async def open_side(impl: Any, queue: str, stack: AsyncExitStack) -> Any:
        if failures.get(impl.key, 0) > 0:
            failures[impl.key] -= 1
            raise RuntimeError(f"{impl.key} stalled")
        return impl.key

    async def measure(sessions: dict[str, Any]) -> dict[str, float]:
        return {key: 1.0 for key in sessions}

    def record(found: dict[str, float], sessions: dict[str, Any]) -> None:
        for key, value in found.items():
            suite._results[key].add("latency_p50", value)

    await suite._with_sides(impls, "latency", 0, open_side, measure, record)


async def test_a_run_a_side_failed_in_is_measured_again_for_every_side() -> None:
    suite, impls = _suite(["node", "queuekit"])
    await _measure_with(suite, impls, {"node": 1})
    for impl in impls:  # the second try's values only, and no failure left
        assert suite._results[impl.key].values["latency_p50"] == [1.0]
        assert suite._results[impl.key].errors == {}
    assert len(suite._repeated) == 1 and "node stalled" in suite._repeated[0]
    assert len(suite._redis.deleted) == 4  # type: ignore[attr-defined]
    result = SuiteResult(suite._options, "7.0", list(suite._results.values()), 1.0,
                         suite._repeated)
    env = Environment(command="make bench", date=datetime.now(UTC), loop="uvloop",
                      job_options="the defaults", node="v20")
    assert "measured again after a side failed" in render(result, env)


async def test_a_failure_that_happens_again_stands() -> None:
    suite, impls = _suite(["node", "queuekit"])
    await _measure_with(suite, impls, {"node": 2})
    assert "latency" in suite._results["node"].errors
    assert suite._results["queuekit"].values["latency_p50"] == [1.0]  # not counted twice


def test_rewinding_forgets_what_came_after_the_mark() -> None:
    result = ImplResult("q", "Q")
    result.add("add_one", 1.0)
    mark = result.mark()
    result.add("add_one", 2.0)
    result.add("rss", 3.0)
    result.commands["add_one"] = [{"evalsha": 1.0}]
    result.errors["rss"] = "boom"
    assert result.errors_since(mark) == ["boom"]
    result.rewind(mark)
    assert (result.values, result.commands, result.errors) == (
        {"add_one": [1.0], "rss": []}, {"add_one": []}, {})


def _drifting() -> SuiteResult:
    """Three runs of a machine whose speed drifts: queuekit is ahead in two of them, and its
    middle run is a slow stretch while Node's is a fast one."""
    ours, node = ImplResult("queuekit", "queuekit"), ImplResult("node", "Node")
    for a, b in ((44.0, 40.0), (18.0, 24.0), (21.0, 20.0)):
        ours.add("add_one", a)
        node.add("add_one", b)
    ours.add("rss_10", 2.0)
    node.add("rss_10", 4.0)
    options = SuiteOptions(jobs=10, runs=3, latency_samples=5, rss_checkpoints=(10,))
    return SuiteResult(options, "7.0", [node, ours], 1.0)


def test_the_ratio_row_is_the_median_of_the_runs_own_ratios() -> None:
    lines = results_table(_drifting())
    ratio = next(line for line in lines if line.startswith("| *queuekit / Node*"))
    cells = [cell.strip() for cell in ratio.strip("|").split("|")]
    # 44/40, 18/24, 21/20 -> median 1.05 (the ratio of the medians, 21/24, would be 0.88);
    # RSS, measured once, stays a ratio of the values.
    assert cells[1] == "1.05"
    assert cells[-1] == "0.50"


def test_the_per_run_table_lists_each_run_its_median_and_the_ratio_of_medians() -> None:
    lines = per_run_table(_drifting())
    assert lines[0] == "| run | add_one |"
    assert lines[2:] == ["| 1 | 1.10 |", "| 2 | 0.75 |", "| 3 | 1.05 |",
                         "| *median* | 1.05 |", "| *ratio of the medians* | 0.88 |"]
