"""The producer scenarios, timed in interleaved slices.

This machine is shared, and its speed drifts from one second to the next. Measured back
to back, two sides adding 10,000 jobs each (1.5 s apiece) ran on different machines: one
run's queuekit / Node ratio of *add one* swung from 0.85 to 1.5 with neither side
changed, while both sides' rates moved together from 5,600 to 11,000 jobs/s between runs.

So here every implementation keeps one producer open on a queue of its own, in a process
of its own (two Python sides in one process ran differently: the heavier one's CPU history
changed where the scheduler woke the other), and the jobs
go in slices (:data:`SLICES`): the sides take turns slice by slice, in an order that
rotates with every slice, and each side's rate is its jobs over the sum of its slices'
times. Every side sees the same stretch of the machine's time, a few tens of
milliseconds at a time. Each slice is timed by the side itself (Node's inside Node), so
taking turns costs no side any time; ``INFO commandstats`` is read around every slice
and the deltas summed per side.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from benchmarks.commandstats import RedisSnapshot, SuiteRedis, snapshot_delta, summed
from benchmarks.implementations import Adder

log = logging.getLogger(__name__)

IN_FLIGHT_WINDOW: Final = 50
BULK_CHUNK: Final = 1000


@dataclass(frozen=True)
class SliceSpec:
    """How one producer scenario is cut: ``size`` jobs a slice, added by ``add``."""

    size: int
    add: Callable[[Adder, int, int], Awaitable[float]]


SLICES: Final[Mapping[str, SliceSpec]] = {
    # 250 serial adds last 25-50 ms: long against a scheduler tick, short against drift.
    "add_one": SliceSpec(250, lambda adder, first, count: adder.add_one(first, count)),
    "add_in_flight": SliceSpec(
        1000, lambda adder, first, count: adder.add_in_flight(first, count, IN_FLIGHT_WINDOW)
    ),
    "add_bulk": SliceSpec(
        BULK_CHUNK, lambda adder, first, count: adder.add_bulk(first, count, BULK_CHUNK)
    ),
}


@dataclass
class SideTotal:
    """One side's sum over its slices."""

    seconds: float = 0.0
    slices: list[float] = field(default_factory=list)
    costs: list[RedisSnapshot] = field(default_factory=list)
    error: str | None = None

    @property
    def cost(self) -> RedisSnapshot:
        """What Redis did during this side's slices."""
        return summed(self.costs)


def slice_bounds(jobs: int, size: int) -> list[tuple[int, int]]:
    """``(first, count)`` of each slice of ``jobs`` jobs, ``size`` at most each."""
    return [(first, min(size, jobs - first)) for first in range(0, jobs, size)]


def turn_order(keys: list[str], turn: int) -> list[str]:
    """``keys`` rotated by ``turn``: who goes first changes with every slice."""
    shift = turn % len(keys) if keys else 0
    return keys[shift:] + keys[:shift]


async def time_interleaved(
    redis: SuiteRedis, adders: Mapping[str, Adder], jobs: int, spec: SliceSpec, run: int
) -> dict[str, SideTotal]:
    """Add ``jobs`` jobs through every adder, slice by slice in turns.

    A side whose slice raises is recorded with its error and left out of later turns;
    the others go on.
    """
    totals = {key: SideTotal() for key in adders}
    for turn, (first, count) in enumerate(slice_bounds(jobs, spec.size)):
        active = [key for key in adders if totals[key].error is None]
        for key in turn_order(active, turn + run):
            total = totals[key]
            before = await redis.snapshot()
            try:
                seconds = await spec.add(adders[key], first, count)
            except Exception as err:  # one side failing must not cost the others
                log.exception("%s failed in the slice of jobs %d..%d", key, first,
                              first + count - 1)
                total.error = f"{type(err).__name__}: {err}"[:300]
                continue
            total.costs.append(snapshot_delta(before, await redis.snapshot()))
            total.seconds += seconds
            total.slices.append(seconds)
            log.debug("%s: jobs %d..%d in %.1f ms", key, first, first + count - 1, seconds * 1e3)
    return totals
