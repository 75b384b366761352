"""Runs every scenario for every implementation on one Redis server and collects results.

Each measurement gets a fresh queue name, whose keys are deleted afterwards; Redis
``INFO commandstats`` is read around each measurement to count the commands it cost.
The order of the implementations rotates from run to run, so none is always first. The
throughput and latency scenarios measure all implementations together, in turns of short
slices in a balanced order (:mod:`benchmarks.interleave`); the others (scheduler-fed,
``--processes``, RSS) measure one implementation after the other.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Final, TypeVar

from benchmarks.commandstats import SuiteRedis, snapshot_delta
from benchmarks.common import percentile
from benchmarks.implementations import Implementation, SliceSession
from benchmarks.interleave import (
    BULK_CHUNK,
    HIGH_CONCURRENCY,
    SLICES,
    SideSamples,
    SideTotal,
    sample_interleaved,
    time_interleaved,
)
from benchmarks.measure import WorkerReport
from benchmarks.processes import PROCESS_COUNTS, supervised_rate
from benchmarks.results import ImplResult, SuiteOptions, SuiteResult

log = logging.getLogger(__name__)
T = TypeVar("T")

RSS_CONCURRENCY: Final = 50
LATENCY_WARMUP: Final = 20

_Scenario = Callable[[Implementation, str, ImplResult], Awaitable[None]]


class Suite:
    """Runs the scenarios for the given implementations."""

    def __init__(
        self,
        redis_url: str,
        options: SuiteOptions,
        implementations: list[Implementation],
        unavailable: list[ImplResult],
    ) -> None:
        self._redis = SuiteRedis(redis_url)
        self._redis_url = redis_url
        self._options = options
        self._impls = implementations
        self._results = {impl.key: ImplResult(impl.key, impl.label) for impl in implementations}
        self._unavailable = unavailable
        self._repeated: list[str] = []

    async def run(self) -> SuiteResult:
        """Run everything; a failing measurement is recorded and the suite goes on."""
        started = time.monotonic()
        try:
            for impl in self._impls:
                self._results[impl.key].versions = impl.versions()
            redis_version = await self._redis.version()
            for run in range(self._options.runs):
                order = (
                    self._impls[run % len(self._impls) :] + self._impls[: run % len(self._impls)]
                )
                log.info(
                    "run %d/%d, order: %s",
                    run + 1,
                    self._options.runs,
                    ", ".join(impl.key for impl in order),
                )
                for scenario in self._sliced_scenarios():
                    await self._interleaved(order, scenario, run)
                if "latency" in self._options.scenarios:
                    await self._latency(order, run)
                for scenario, measure in self._scenarios(run):
                    for impl in order:
                        await self._measure(impl, scenario, run, measure)
        finally:
            await self._redis.client.aclose()
        ordered = [self._results[impl.key] for impl in self._impls] + self._unavailable
        return SuiteResult(self._options, redis_version, ordered, time.monotonic() - started,
                           self._repeated)

    def _scenarios(self, run: int) -> list[tuple[str, _Scenario]]:
        scenarios: list[tuple[str, _Scenario]] = [
            ("process_scheduled", self._process_scheduled),
            ("processes", self._processes),
        ]
        # Memory is not a timing: one run is enough, and it is the longest scenario.
        if run == 0 and self._options.rss_checkpoints:
            scenarios.append(("rss", self._rss))
        return [(name, measure) for name, measure in scenarios if name in self._options.scenarios]

    def _sliced_scenarios(self) -> list[str]:
        return [name for name in SLICES if name in self._options.scenarios]

    @staticmethod
    def _queue_name(impl: Implementation, scenario: str, run: int) -> str:
        return f"bench-{impl.key}-{scenario.replace('_', '-')}-r{run + 1}-{secrets.token_hex(3)}"

    async def _with_sides(
        self, order: list[Implementation], scenario: str, run: int,
        open_side: Callable[[Implementation, str, AsyncExitStack], Awaitable[SliceSession]],
        measure: Callable[[dict[str, SliceSession]], Awaitable[T]],
        record: Callable[[T, dict[str, SliceSession]], None],
    ) -> None:
        """Open a session for every side on a fresh queue of its own (a side that cannot
        open one is recorded as failed), ``measure`` them all, close them, ``record`` what
        was measured; the queues are deleted at the end.

        A run in which a side failed is measured once more, for every side, before the
        failure stands (logged and listed in the report): one stall of one side's process
        would otherwise cost every side that run's values."""
        before = {impl.key: self._results[impl.key].mark() for impl in order}
        await self._sides_once(order, scenario, run, open_side, measure, record)
        failed = {impl.key: errors for impl in order
                  if (errors := self._results[impl.key].errors_since(before[impl.key]))}
        if failed:
            log.warning("%s run %d failed (%s): measuring it again", scenario, run, failed)
            self._repeated.append(f"{scenario}, run {run}: {failed}"[:300])
            for impl in order:  # back to before the failed run
                self._results[impl.key].rewind(before[impl.key])
            await self._sides_once(order, scenario, run, open_side, measure, record)

    async def _sides_once(
        self, order: list[Implementation], scenario: str, run: int,
        open_side: Callable[[Implementation, str, AsyncExitStack], Awaitable[SliceSession]],
        measure: Callable[[dict[str, SliceSession]], Awaitable[T]],
        record: Callable[[T, dict[str, SliceSession]], None],
    ) -> None:
        queues = {impl.key: self._queue_name(impl, scenario, run) for impl in order}
        sessions: dict[str, SliceSession] = {}
        try:
            async with AsyncExitStack() as stack:
                for impl in order:
                    try:
                        sessions[impl.key] = await open_side(impl, queues[impl.key], stack)
                    except Exception as err:
                        self._failed(impl.key, scenario, err)
                found = await measure(sessions)
            record(found, sessions)
        except Exception as err:  # closing a session failed: the scenario is lost for all
            for impl in order:
                self._failed(impl.key, scenario, err)
        finally:
            for queue in queues.values():
                await self._redis.delete_queue(queue)

    async def _interleaved(self, order: list[Implementation], scenario: str, run: int) -> None:
        """One throughput scenario for every implementation at once, in slices."""
        jobs, spec = self._options.jobs, SLICES[scenario]

        async def open_side(impl: Implementation, queue: str,
                            stack: AsyncExitStack) -> SliceSession:
            # A producer's warm-up add takes job index `jobs`, past the timed ones.
            opened = (impl.open_adder(queue, jobs) if spec.concurrency is None
                      else impl.open_worker(queue, spec.concurrency))
            return await stack.enter_async_context(opened)

        def record(totals: dict[str, SideTotal], sessions: dict[str, SliceSession]) -> None:
            for key, total in totals.items():
                result = self._results[key]
                if total.error is not None:
                    result.errors[scenario] = total.error
                    continue
                result.add_cost(scenario, total.cost, jobs)
                self._rate(result, scenario, total.seconds)
                if spec.concurrency is not None:
                    self._worker_closed(result, scenario, sessions[key].result)

        await self._with_sides(
            order, scenario, run, open_side,
            lambda sessions: time_interleaved(self._redis, sessions, jobs, spec, run), record)

    async def _latency(self, order: list[Implementation], run: int) -> None:
        """Add-to-done latencies of every side, each with a worker running, in turns."""
        samples = self._options.latency_samples

        async def open_side(impl: Implementation, queue: str,
                            stack: AsyncExitStack) -> SliceSession:
            await stack.enter_async_context(impl.running_worker(queue))
            return await stack.enter_async_context(impl.open_adder(queue, samples))

        async def measure(sessions: dict[str, SliceSession]) -> dict[str, dict[str, SideSamples]]:
            # latency_*: through the library's own wait (wait_for_job, waitUntilFinished);
            # stream_*: the shared events-stream reader, the same for every implementation.
            return {prefix: await sample_interleaved(sessions, wait, samples, LATENCY_WARMUP,
                                                     run)
                    for prefix, wait in (("latency", "app"), ("stream", "stream"))}

        def record(found: dict[str, dict[str, SideSamples]],
                   sessions: dict[str, SliceSession]) -> None:
            for prefix, sides in found.items():
                for key, side in sides.items():
                    self._record_latency(self._results[key], prefix, side)

        await self._with_sides(order, "latency", run, open_side, measure, record)

    @staticmethod
    def _record_latency(result: ImplResult, prefix: str, side: SideSamples) -> None:
        if side.error is not None or not side.values:
            result.errors["latency"] = side.error or "no samples"
            return
        p50, p99 = percentile(side.values, 50), percentile(side.values, 99)
        result.add(f"{prefix}_p50", p50)
        result.add(f"{prefix}_p99", p99)
        log.info("%-9s %-14s p50 %.2f ms, p99 %.2f ms", result.key, prefix, p50, p99)

    def _failed(self, key: str, scenario: str, err: Exception) -> None:
        log.error("%s %s failed", key, scenario, exc_info=err)
        self._results[key].errors.setdefault(scenario, f"{type(err).__name__}: {err}"[:300])

    @staticmethod
    def _worker_closed(result: ImplResult, scenario: str, report: dict[str, object]) -> None:
        worker = WorkerReport.from_json(report)
        if worker.failed:
            result.errors[scenario] = f"{worker.failed} jobs failed"
        result.add(f"{scenario}_close_s", worker.close_s)
        log.debug("%-9s %-14s worker closed in %.2f s", result.key, scenario, worker.close_s)

    async def _measure(
        self,
        impl: Implementation,
        scenario: str,
        run: int,
        measure: _Scenario,
    ) -> None:
        result = self._results[impl.key]
        queue = self._queue_name(impl, scenario, run)
        try:
            await measure(impl, queue, result)
        except Exception as err:  # one failure must not cost the other measurements
            log.exception("%s %s failed", impl.key, scenario)
            result.errors[scenario] = f"{type(err).__name__}: {err}"[:300]
        finally:
            await self._redis.delete_queue(queue)

    async def _counted(
        self, result: ImplResult, scenario: str, jobs: int, action: Awaitable[T]
    ) -> T:
        before = await self._redis.snapshot()
        value = await action
        result.add_cost(scenario, snapshot_delta(before, await self._redis.snapshot()), jobs)
        return value

    def _rate(self, result: ImplResult, metric: str, seconds: float) -> None:
        rate = self._options.jobs / seconds
        result.add(metric, rate)
        log.info("%-9s %-14s %9.0f jobs/s", result.key, metric, rate)

    async def _process_scheduled(
        self, impl: Implementation, queue: str, result: ImplResult
    ) -> None:
        """Like process c=50, but every job is a job scheduler's run: ``jobs`` hourly
        schedulers fill the queue with their first runs, and the worker advances each
        (BullMQ's ``updateJobScheduler``: the next run, delayed an hour) as it takes its
        run. The worker is done when nothing waits or runs. Compare with process_c50."""
        preload = getattr(impl, "preload_scheduled", None)
        jobs = self._options.jobs
        if preload is None or not await preload(queue, jobs):
            log.info("%-9s %-14s not measured (no job schedulers on this side)", impl.key,
                     "process_scheduled")
            return
        report = await self._counted(
            result, "process_scheduled", jobs,
            impl.run_worker_process(queue, jobs, HIGH_CONCURRENCY, [], delayed_remain=True),
        )
        if report.elapsed_s is None or report.processed < jobs or report.failed:
            raise RuntimeError(
                f"worker processed {report.processed}/{jobs} jobs, {report.failed} failed"
            )
        self._rate(result, "process_scheduled", report.elapsed_s)
        plain = result.median("process_c50")
        if plain:
            log.info("%-9s %-14s %.2f x process_c50", impl.key, "process_scheduled",
                     self._options.jobs / report.elapsed_s / plain)

    async def _processes(self, impl: Implementation, queue: str, result: ImplResult) -> None:
        if impl.key != "queuekit":  # `queuekit worker --processes` is queuekit's own
            return
        jobs = self._options.jobs
        for count in PROCESS_COUNTS:
            rate = await supervised_rate(self._redis_url, f"{queue}-p{count}", jobs, count,
                                         timeout=120.0 + jobs / 100.0)
            result.add(f"processes_{count}", rate)
            log.info("%-9s %-14s %9.0f jobs/s", result.key, f"processes={count}", rate)
            await self._redis.delete_queue(f"{queue}-p{count}")

    async def _rss(self, impl: Implementation, queue: str, result: ImplResult) -> None:
        checkpoints = list(self._options.rss_checkpoints)
        jobs = max(checkpoints)
        await impl.preload(queue, jobs, BULK_CHUNK)
        report = await impl.run_worker_process(queue, jobs, RSS_CONCURRENCY, checkpoints)
        missing = [n for n in checkpoints if n not in report.rss_at]
        if missing:
            raise RuntimeError(f"no RSS sample at {missing} (processed {report.processed})")
        result.add("rss_start", report.rss_start)
        for n in checkpoints:
            result.add(f"rss_{n}", report.rss_at[n])
        log.info(
            "%-9s %-14s %s",
            impl.key,
            "rss",
            ", ".join(f"{n}: {report.rss_at[n] / 2**20:.1f} MiB" for n in checkpoints),
        )
