"""What a benchmark suite measured: per implementation, per run (``benchmarks.suite``
fills them, ``benchmarks.report`` and ``benchmarks.tables`` write them out)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Final

from benchmarks.commandstats import RedisSnapshot, per_job_calls, redis_usec_per_job

_Mark = tuple[dict[str, str], dict[str, int], dict[str, int]]

SCENARIOS: Final = (
    "add_one",
    "add_in_flight",
    "add_bulk",
    "process_c1",
    "process_c50",
    "process_scheduled",
    "latency",
    "rss",
    "processes",
)

@dataclass(frozen=True)
class SuiteOptions:
    """What to run."""

    jobs: int
    runs: int
    latency_samples: int
    rss_checkpoints: tuple[int, ...]
    scenarios: frozenset[str] = frozenset(SCENARIOS)


@dataclass
class ImplResult:
    """All values measured for one implementation; each list has one value per run."""

    key: str
    label: str
    versions: dict[str, str] = field(default_factory=dict)
    unavailable: str | None = None
    values: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    commands: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    """Per scenario, per run: calls per job of each Redis command."""

    def add(self, metric: str, value: float) -> None:
        """Record one run's value of ``metric``."""
        self.values.setdefault(metric, []).append(value)

    def add_cost(self, scenario: str, delta: RedisSnapshot, jobs: int) -> None:
        """Record what Redis did for one run of ``scenario`` (``jobs`` jobs)."""
        self.commands.setdefault(scenario, []).append(per_job_calls(delta, jobs))
        # Redis-side cost: command time (commandstats) and the server's CPU time per job.
        self.add(f"{scenario}_redis_usec", redis_usec_per_job(delta, jobs))
        self.add(f"{scenario}_redis_cpu_usec", delta.cpu_s * 1e6 / jobs)

    def mark(self) -> _Mark:
        """Where the results stand, for :meth:`errors_since` and :meth:`rewind`."""
        return (dict(self.errors), {m: len(v) for m, v in self.values.items()},
                {s: len(c) for s, c in self.commands.items()})

    def errors_since(self, mark: _Mark) -> list[str]:
        """The failures recorded since ``mark``."""
        return [error for name, error in self.errors.items() if name not in mark[0]]

    def rewind(self, mark: _Mark) -> None:
        """Forget what was recorded since ``mark`` (a run to be measured again)."""
        self.errors = dict(mark[0])
        for metric, values in self.values.items():
            del values[mark[1].get(metric, 0):]
        for scenario, calls in self.commands.items():
            del calls[mark[2].get(scenario, 0):]

    def median(self, metric: str) -> float | None:
        """Median over the runs of ``metric``, or None if it was not measured."""
        found = self.values.get(metric)
        return statistics.median(found) if found else None


def run_ratios(top: ImplResult, bottom: ImplResult, metric: str) -> list[float] | None:
    """``top / bottom`` of ``metric`` in each run, or None unless both sides have a value in
    every run: the sides take turns within a run, so each run's ratio compares them over the
    same stretch of time, which a ratio of two medians (each side's middle run, maybe two
    different runs of a machine whose speed drifts) does not."""
    ours, theirs = top.values.get(metric), bottom.values.get(metric)
    if not ours or not theirs or len(ours) != len(theirs) or not all(theirs):
        return None
    return [a / b for a, b in zip(ours, theirs, strict=True)]


def paired_ratio(top: ImplResult, bottom: ImplResult, metric: str) -> float | None:
    """The median of the runs' own ratios (:func:`run_ratios`)."""
    ratios = run_ratios(top, bottom, metric)
    return statistics.median(ratios) if ratios else None


@dataclass
class SuiteResult:
    """Results of the whole suite."""

    options: SuiteOptions
    redis_version: str
    results: list[ImplResult]
    elapsed_s: float = 0.0
    repeated: list[str] = field(default_factory=list)
    """Runs of a scenario measured again because a side failed in them (see
    ``Suite._with_sides``), with what failed."""
