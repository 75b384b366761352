"""The chaos soak: jobs from a Python and a Node BullMQ producer at once, three
``queuekit worker`` processes, one of them SIGKILLed and restarted every few seconds,
two ``kill -9`` restarts of a durable Redis (``appendonly yes``, ``appendfsync always``)
in the middle, a share of jobs that fail and retry, fail for good, or are delayed.

At the end every acknowledged job (its add returned an id) must be ``completed``, or
``failed`` when it was meant to: 0 lost. Duplicate runs (at-least-once) are counted and
must stay within what the faults can explain: each kill or Redis restart can re-run at
most the jobs that were in flight (``concurrency`` per worker). The long-lived workers'
RSS must stay flat. Everything runs on loopback; every server and process started here is
ended by its own pid; the whole run has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from queuekit import (
    JobOptions,
    QueueRegistry,
    QueueUnavailableError,
    RedisQueueService,
    load_settings,
)
from queuekit.settings import QueuekitSettings
from tests.interop.node_bullmq import ensure_node_bullmq
from tests.soak.plugin import SOAK_QUEUE, JobKind, SoakJobData, runs_key
from tests.soak.processes import (
    ATTEMPTS,
    BACKOFF_MS,
    KEEP,
    PREFIX,
    NodeProducer,
    Worker,
    rss_of,
)
from tests.support.redis_server import RedisServer

log = logging.getLogger("tests.soak")

DURABLE = ("--appendonly", "yes", "--appendfsync", "always")
_MIB = 2**20
#: job caught by several kills must not fail for stalling (it is not the job's fault).
WORKER = {"lock_duration": 2000, "stalled_interval": 1000, "max_stalled_count": 1000,
          "drain_delay": 1.0, "shutdown_timeout": 5.0, "run_retry_delay": 200}


def job_spec(n: int) -> tuple[JobKind, int, int]:
    """(kind, fail_times, delay ms) of job ``n``; the Node producer has the same rules."""
    kind: JobKind = "fail" if n % 200 == 13 else "retry" if n % 50 == 7 else "ok"
    return kind, 2 if kind == "retry" else 0, 200 + n % 1800 if n % 10 == 3 else 0


def expected_runs(kind: str, fail_times: int) -> int:
    """Executions a job needs without faults."""
    return fail_times + 1 if kind == "retry" else 1


@dataclass
class SoakConfig:
    """How big and how rough."""

    jobs: int = 50_000
    rate: float = 250.0
    """Jobs per second, both producers together."""
    node_share: float = 0.4
    workers: int = 3
    concurrency: int = 10
    kill_every: float = 3.0
    redis_restarts: int = 2
    deadline: float = 900.0


@dataclass
class SoakResult:
    """What the soak saw; :meth:`summary` is its one line."""

    jobs: int = 0
    python_jobs: int = 0
    node_jobs: int = 0
    kills: int = 0
    redis_restarts: int = 0
    completed: int = 0
    failed_on_purpose: int = 0
    lost: list[str] = field(default_factory=list)
    unexpected: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0
    duplicate_bound: int = 0
    rss_start: list[int] = field(default_factory=list)
    rss_end: list[int] = field(default_factory=list)
    elapsed: float = 0.0
    add_errors: int = 0

    @property
    def rss_growth(self) -> float:
        """The largest relative RSS growth of a long-lived worker."""
        return max((end - start) / start for start, end in
                   zip(self.rss_start, self.rss_end, strict=True)) if self.rss_start else 0.0

    def summary(self) -> str:
        """One line for people and CI logs."""
        rss = ", ".join(f"{s / _MIB:.1f}->{e / _MIB:.1f}"
                        for s, e in zip(self.rss_start, self.rss_end, strict=True))
        return (f"soak: jobs={self.jobs} (python {self.python_jobs}, node {self.node_jobs}) "
                f"completed={self.completed} failed_on_purpose={self.failed_on_purpose} "
                f"kills={self.kills} redis_restarts={self.redis_restarts} "
                f"lost={len(self.lost) + len(self.unexpected)} duplicates={self.duplicates} "
                f"(bound {self.duplicate_bound}) rss_mib=[{rss}] "
                f"(max growth {self.rss_growth:+.1%}) add_retries={self.add_errors} "
                f"elapsed={self.elapsed:.0f}s")



def _settings(url: str) -> QueuekitSettings:
    return load_settings(
        redis={"url": url, "prefix": PREFIX},
        jobs={"attempts": ATTEMPTS, "backoff": {"type": "fixed", "delay": BACKOFF_MS},
              "remove_on_complete": {"count": KEEP}, "remove_on_fail": {"count": KEEP}},
        # Adds during a Redis restart fail fast and are retried by the producer; the
        # breaker must not keep them failing for 30 s after Redis is back.
        breaker={"fail_max": 1000, "reset_timeout": 0.2},
    )


def _registry() -> QueueRegistry:
    registry = QueueRegistry()
    registry.register(SOAK_QUEUE, SoakJobData)
    return registry


class Soak:
    """One soak run; :meth:`run` returns its :class:`SoakResult`."""

    def __init__(self, config: SoakConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.redis = RedisServer(extra_args=DURABLE)
        self.result = SoakResult()
        self.python_acked: dict[str, int] = {}
        self.workers: list[Worker] = []
        self.producing = True
        self.worker_config = workdir / "worker.yaml"
        self.node = NodeProducer(0, 0, 0, 1.0)  # replaced once Redis has its port

    # -- the pieces ---------------------------------------------------------------------

    def _spawn(self, index: int) -> Worker:
        return Worker(self.worker_config, self.config.concurrency,
                      self.workdir / f"worker-{index}.log")

    async def _produce_python(self, qs: RedisQueueService, count: int, rate: float) -> None:
        started = time.monotonic()
        for n in range(count):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            kind, fail_times, delay_ms = job_spec(n)
            data = SoakJobData(user_id=f"user-{n % 97}", n=n, kind=kind,
                               fail_times=fail_times, source="python")
            while True:
                try:
                    job = await qs.add_job(SOAK_QUEUE, "soak", data,
                                           options=JobOptions(delay=delay_ms))
                    break
                except QueueUnavailableError:  # not acknowledged: add it again
                    self.result.add_errors += 1
                    await asyncio.sleep(0.05)
            self.python_acked[job.id] = n

    async def _chaos(self, production_s: float) -> None:
        """Kill the last worker every ``kill_every`` s; restart Redis at even intervals."""
        restarts_at = [production_s * (i + 1) / (self.config.redis_restarts + 1)
                       for i in range(self.config.redis_restarts)]
        started = time.monotonic()
        next_kill = started + self.config.kill_every
        victim = len(self.workers) - 1
        while self.producing:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            if restarts_at and now - started >= restarts_at[0]:
                restarts_at.pop(0)
                log.info("soak: kill -9 of redis-server %d", self.redis.pid)
                self.redis.stop(signal.SIGKILL)
                await asyncio.to_thread(self.redis.start)
                self.result.redis_restarts += 1
            if now >= next_kill:
                next_kill = now + self.config.kill_every
                self.workers[victim].kill()
                self.workers[victim] = self._spawn(victim)
                self.result.kills += 1

    async def _drain(self, qs: RedisQueueService, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                counts = await qs.get_job_counts(SOAK_QUEUE)
            except QueueUnavailableError:
                counts = None
            if counts is not None and not any(counts[s] for s in (
                    "waiting", "active", "delayed", "prioritized", "paused")):
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"jobs still pending at the deadline: {counts}")

    async def _check(self, qs: RedisQueueService) -> None:
        acked = {**self.python_acked, **self.node.acked}
        runs: dict[str, str] = await qs.connection.client.hgetall(  # type: ignore[assignment]
            runs_key(PREFIX))  # decode_responses: str keys and values
        ids = sorted(acked, key=int)
        for first in range(0, len(ids), 200):
            chunk = ids[first:first + 200]
            infos = await asyncio.gather(*(qs.get_job(SOAK_QUEUE, i) for i in chunk))
            for job_id, info in zip(chunk, infos, strict=True):
                kind, fail_times, _ = job_spec(acked[job_id])
                if info is None:
                    self.result.lost.append(job_id)
                    continue
                wanted = "failed" if kind == "fail" else "completed"
                if str(info.state) != wanted:
                    self.result.unexpected[job_id] = f"{info.state}: {info.failed_reason}"
                    continue
                if kind == "fail":
                    self.result.failed_on_purpose += 1
                else:
                    self.result.completed += 1
                extra = int(runs.get(job_id, 0)) - expected_runs(kind, fail_times)
                self.result.duplicates += max(extra, 0)

    # -- the run ------------------------------------------------------------------------

    async def run(self) -> SoakResult:
        """Run the soak; servers and processes are ended (by pid) whatever happens."""
        config, result = self.config, self.result
        began = time.monotonic()
        deadline = began + config.deadline
        await asyncio.to_thread(ensure_node_bullmq)  # npm ci on a fresh machine
        await asyncio.to_thread(self.redis.start)
        self.worker_config.write_text(yaml.safe_dump({
            "redis": {"url": self.redis.url, "prefix": PREFIX}, "worker": WORKER,
            "plugins": ["tests.soak.plugin"]}))
        node_jobs = round(config.jobs * config.node_share)
        python_jobs = config.jobs - node_jobs
        production_s = config.jobs / config.rate
        self.node = NodeProducer(self.redis.port, python_jobs, node_jobs,
                                 config.rate * config.node_share)
        qs = await RedisQueueService.connect(_settings(self.redis.url), _registry())
        try:
            self.workers = [self._spawn(i) for i in range(config.workers)]
            # RSS baseline of the long-lived workers once they run (connected, warmed up).
            await self._warm_up(qs, min(500, config.jobs // 10), deadline)
            result.rss_start = [rss_of(w.pid) for w in self.workers[:-1]]
            log.info("soak: producing %d jobs for %.0f s", config.jobs, production_s)
            chaos = asyncio.ensure_future(self._chaos(production_s))
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 1)):
                    await asyncio.gather(
                        self._produce_python(qs, python_jobs,
                                             config.rate * (1 - config.node_share)),
                        self.node.run())
            finally:
                self.producing = False
                await chaos
            await self._drain(qs, deadline)
            result.rss_end = [rss_of(w.pid) for w in self.workers[:-1]]
            await self._check(qs)
        finally:
            self.producing = False
            self.node.stop()
            for index, worker in enumerate(self.workers):
                code = worker.stop()
                log.info("soak: worker %d (pid %d) exited %s", index, worker.pid, code)
            await qs.close()
            self.redis.cleanup()
        result.python_jobs, result.node_jobs = len(self.python_acked), len(self.node.acked)
        result.jobs = result.python_jobs + result.node_jobs
        result.add_errors += self.node.errors
        result.duplicate_bound = config.concurrency * (
            result.kills + result.redis_restarts * config.workers)
        result.elapsed = time.monotonic() - began
        return result

    async def _warm_up(self, qs: RedisQueueService, jobs: int, deadline: float) -> None:
        """Warm-up: ``jobs`` throw-away jobs through the workers before the baseline."""
        warm = [await qs.add_job(SOAK_QUEUE, "warm-up",
                                 SoakJobData(user_id="warm", n=1_000_000_000 + i))
                for i in range(jobs)]
        for job in warm:
            await qs.wait_for_job(SOAK_QUEUE, job.id, timeout=max(deadline - time.monotonic(),
                                                                  1))
        await qs.connection.client.hdel(runs_key(PREFIX), *(job.id for job in warm))


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A temporary folder for the worker config and logs (kept when the soak fails)."""
    path = Path(tempfile.mkdtemp(prefix="qk-soak-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def soak(config: SoakConfig, folder: Path) -> SoakResult:
    """Run one soak in ``folder``."""
    return await Soak(config, folder).run()


def failures(result: SoakResult) -> list[str]:
    """What the soak promises and did not keep (empty: it passed)."""
    problems = []
    if result.lost:
        problems.append(f"{len(result.lost)} acknowledged job(s) lost: {result.lost[:10]}")
    if result.unexpected:
        problems.append(f"{len(result.unexpected)} job(s) ended wrong: "
                        f"{dict(list(result.unexpected.items())[:10])}")
    if result.duplicates > result.duplicate_bound:
        problems.append(f"{result.duplicates} duplicate runs > bound {result.duplicate_bound}")
    if result.rss_growth > 0.10:
        problems.append(f"long-lived worker RSS grew {result.rss_growth:+.1%} (> 10 %)")
    return problems
