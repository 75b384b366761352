"""The throughput scenarios, timed in interleaved slices.

This machine is shared, and its speed drifts from one second to the next. Measured back
to back, two sides adding 10,000 jobs each (1.5 s apiece) ran on different machines: one
run's queuekit / Node ratio of *add one* swung from 0.85 to 1.5 with neither side
changed, while both sides' rates moved together from 5,600 to 11,000 jobs/s between runs.

So here every implementation keeps one producer (or one worker) open on a queue of its
own, in a process of its own (two Python sides in one process ran differently: the
heavier one's CPU history changed where the scheduler woke the other), and the jobs go
in slices (:data:`SLICES`): the sides take turns slice by slice, and each side's rate
is its jobs over the sum of its slices' times. The order of the turns is balanced
(:class:`TurnOrder`): every side's slice follows every other side's equally often, because
a slice runs faster after a CPU-heavy one (raw bullmq's adds cost 2-3x the CPU of the
others): in a plain rotation, where each side always follows the same one, the side after
raw bullmq added 15-30 % faster than it did after any other. Every side sees the same
stretch of the machine's time, a few tens of milliseconds at a time. Each slice is
timed by the side itself (Node's inside Node), so taking turns costs no side any time;
``INFO commandstats`` is read around every slice and the deltas summed per side. A
worker's slice: its jobs are added to its paused queue, and the clock runs from
resuming the queue until they are all done.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise, permutations
from typing import Any, Final

from benchmarks.commandstats import RedisSnapshot, SuiteRedis, snapshot_delta, summed
from benchmarks.implementations import SliceSession

log = logging.getLogger(__name__)

WARM_UP_JOBS: Final = 2500
"""Jobs each side puts through untimed before a scenario's timed slices. Node's V8
compiles BullMQ's add path over its first ~2,500 adds (its 250-add slices took 40-70 ms
at first, 13-20 ms after): with only one warm-up add, that start counted against Node,
10-15 % of its serial-add time in a 10,000-job run."""
IN_FLIGHT_WINDOW: Final = 50
BULK_CHUNK: Final = 1000
HIGH_CONCURRENCY: Final = 50


@dataclass(frozen=True)
class SliceSpec:
    """How one scenario is cut: ``size`` jobs a slice, each slice one command ``op``
    (with ``extra`` fields) to a producer session, or to a worker session of
    ``concurrency`` when that is set."""

    size: int
    op: str
    extra: Mapping[str, int] = field(default_factory=dict)
    concurrency: int | None = None
    prepare: str | None = None
    """An untimed command sent before each slice, outside the Redis snapshots (a worker's
    ``fill``: its slice's jobs are added to its paused queue)."""

    def command(self, first: int, count: int) -> dict[str, Any]:
        """The command of the slice of jobs ``first .. first + count - 1``."""
        return {"op": self.op, "first": first, "count": count, **self.extra}


SLICES: Final[Mapping[str, SliceSpec]] = {
    # 250 serial adds last 25-50 ms: long against a scheduler tick, short against drift.
    "add_one": SliceSpec(250, "add-one"),
    "add_in_flight": SliceSpec(1000, "in-flight", {"window": IN_FLIGHT_WINDOW}),
    "add_bulk": SliceSpec(BULK_CHUNK, "bulk", {"chunk": BULK_CHUNK}),
    # A worker's slice: the jobs wait in the paused queue; the clock runs from resuming it
    # until they are done (the steady state; starting the worker stays out of it).
    "process_c1": SliceSpec(1000, "process", concurrency=1, prepare="fill"),
    "process_c50": SliceSpec(1000, "process", concurrency=HIGH_CONCURRENCY, prepare="fill"),
}


@dataclass
class SideTotal:
    """One side's sum over its slices."""

    seconds: float = 0.0
    costs: list[RedisSnapshot] = field(default_factory=list)
    """What Redis did in each of the side's slices."""
    error: str | None = None

    @property
    def cost(self) -> RedisSnapshot:
        """What Redis did during this side's slices."""
        return summed(self.costs)


def slice_bounds(jobs: int, size: int) -> list[tuple[int, int]]:
    """``(first, count)`` of each slice of ``jobs`` jobs, ``size`` at most each."""
    return [(first, min(size, jobs - first)) for first in range(0, jobs, size)]


class TurnOrder:
    """The order of the sides in each turn, balanced over the whole run of slices.

    Each turn is a permutation of the sides, chosen so that, counted over the stream of
    slices (across turns too), every side follows every other side equally often (to
    within one) and no side follows itself: with three sides the turns alternate
    ``a b c`` and ``a c b``. A plain rotation (``a b c``, ``b c a``, ``c a b``) keeps
    every side's predecessor the same. ``start`` varies the choice between equally
    balanced orders from one run to the next.
    """

    def __init__(self, start: int = 0) -> None:
        self._start = start
        self._last: str | None = None
        self.pairs: Counter[tuple[str, str]] = Counter()
        """How often the slice of the second side followed the first's so far."""

    def _adjacent(self, order: tuple[str, ...]) -> list[tuple[str, str]]:
        stream = ((self._last,) if self._last is not None else ()) + order
        return list(pairwise(stream))

    def _imbalance(self, order: tuple[str, ...]) -> tuple[int, int]:
        pairs = self._adjacent(order)
        return (sum(1 for before, after in pairs if before == after),
                sum(self.pairs[pair] for pair in pairs))

    def next(self, keys: list[str]) -> list[str]:
        """The order of the next turn of ``keys`` (the sides still running)."""
        if not keys:
            return []
        candidates = list(permutations(keys))
        shift = self._start % len(candidates)
        order = min(candidates[shift:] + candidates[:shift], key=self._imbalance)
        self.pairs.update(self._adjacent(order))
        self._last = order[-1]
        return list(order)


async def _in_turns(
    keys: list[str], batches: list[tuple[int, int]], order: TurnOrder,
    take: Callable[[str, int, int], Awaitable[None]], what: str,
) -> dict[str, str]:
    """``take(key, first, count)`` for every batch, the keys taking turns in ``order``.
    A key whose turn raises is left out of later turns and the others go on; the
    errors, by key."""
    errors: dict[str, str] = {}
    for first, count in batches:
        for key in order.next([key for key in keys if key not in errors]):
            try:
                await take(key, first, count)
            except Exception as err:  # one side failing must not cost the others
                log.exception("%s failed in its %s of jobs %d..%d", key, what, first,
                              first + count - 1)
                errors[key] = f"{type(err).__name__}: {err}"[:300]
    return errors


async def time_interleaved(
    redis: SuiteRedis, sessions: Mapping[str, SliceSession], jobs: int, spec: SliceSpec,
    run: int, warm_up: int = WARM_UP_JOBS,
) -> dict[str, SideTotal]:
    """Put ``jobs`` jobs through every session, slice by slice in turns, after ``warm_up``
    untimed jobs a side (job indices from ``jobs`` on, outside the Redis snapshots).

    A side whose slice raises is recorded with its error and left out of later turns;
    the others go on.
    """
    totals = {key: SideTotal() for key in sessions}

    async def take(key: str, first: int, count: int) -> None:
        if spec.prepare is not None:
            await sessions[key].run_slice({"op": spec.prepare, "first": first, "count": count})
        before = await redis.snapshot()
        seconds = await sessions[key].run_slice(spec.command(first, count))
        total = totals[key]
        total.costs.append(snapshot_delta(before, await redis.snapshot()))
        total.seconds += seconds
        log.debug("%s: jobs %d..%d in %.1f ms", key, first, first + count - 1, seconds * 1e3)

    async def warm(key: str, first: int, count: int) -> None:
        if spec.prepare is not None:
            await sessions[key].run_slice({"op": spec.prepare, "first": first, "count": count})
        await sessions[key].run_slice(spec.command(first, count))

    # Untimed slices first, past the timed jobs (indices from `jobs` on): the steady
    # state is what a long-lived service sees.
    warm_slices = [(jobs + first, count) for first, count in slice_bounds(warm_up, spec.size)]
    order = TurnOrder(run)  # one stream of slices: the warm-up's, then the timed ones
    errors = await _in_turns(list(sessions), warm_slices, order, warm, "warm-up slice")
    errors |= await _in_turns([key for key in sessions if key not in errors],
                              slice_bounds(jobs, spec.size), order, take, "slice")
    for key, error in errors.items():
        totals[key].error = error
    return totals


LATENCY_BATCH: Final = 50
"""Latency samples a side takes in one turn (~50 ms)."""


@dataclass
class SideSamples:
    """One side's latency samples (ms) of one way of waiting."""

    values: list[float] = field(default_factory=list)
    error: str | None = None


async def sample_interleaved(
    sessions: Mapping[str, SliceSession], wait: str, samples: int, warmup: int, run: int
) -> dict[str, SideSamples]:
    """``samples`` add-to-done latencies per side (a worker running for each), waiting the
    ``wait`` way, in turns of :data:`LATENCY_BATCH`; first ``warmup`` samples a side,
    dropped (the first wait opens its reader)."""
    found = {key: SideSamples() for key in sessions}

    def taker(keep: bool) -> Callable[[str, int, int], Awaitable[None]]:
        async def take(key: str, first: int, count: int) -> None:
            session = sessions[key]
            await session.run_slice({"op": "latency", "first": first, "count": count,
                                     "wait": wait})
            if keep:
                found[key].values.extend(float(v) for v in session.last_reply["latencies_ms"])
        return take

    what = f"{wait} latency samples"
    order = TurnOrder(run)
    errors = await _in_turns(list(sessions), slice_bounds(warmup, max(warmup, 1)), order,
                             taker(False), what)
    errors |= await _in_turns([key for key in sessions if key not in errors],
                              slice_bounds(samples, LATENCY_BATCH), order, taker(True), what)
    for key, error in errors.items():
        found[key].error = error
    return found
