"""The benchmark's interleaved producer timing: every side adds every job once, the sides
take turns slice by slice in a balanced order (every side after every other equally
often), a failing side drops out alone, and the Redis cost of each side's slices is
summed without the suite's own INFO calls."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from itertools import pairwise
from typing import Any

import pytest

from benchmarks.commandstats import RedisSnapshot, SuiteRedis, per_job_calls, redis_usec_per_job
from benchmarks.interleave import (
    SLICES,
    SliceSpec,
    TurnOrder,
    sample_interleaved,
    slice_bounds,
    time_interleaved,
)
from benchmarks.measure import serve_worker_slices
from benchmarks.producer_proc import serve
from benchmarks.sides import JobCounts


class FakeRedis:
    """Snapshots whose counters grow by what the adders report (plus the INFO itself)."""

    def __init__(self) -> None:
        self.calls = {"evalsha": 0, "info": 0}
        self.usec = {"evalsha": 0, "info": 0}
        self.cpu_s = 0.0

    async def snapshot(self) -> RedisSnapshot:
        self.calls["info"] += 1
        self.usec["info"] += 7
        return RedisSnapshot(calls=dict(self.calls), usec=dict(self.usec), cpu_s=self.cpu_s)


class FakeSession:
    """A side's session: records the slices it was given, costs Redis what it adds."""

    def __init__(self, name: str, log: list[tuple[str, int, int]], redis: FakeRedis,
                 seconds_per_job: float, fail_at: int | None = None) -> None:
        self.name, self.log, self.redis = name, log, redis
        self.seconds_per_job, self.fail_at = seconds_per_job, fail_at
        self.added: list[int] = []
        self.commands: list[Mapping[str, Any]] = []
        self.result: dict[str, Any] = {}
        self.last_reply: dict[str, Any] = {}

    async def run_slice(self, command: Mapping[str, Any]) -> float:
        first, count = int(command["first"]), int(command["count"])
        if self.fail_at is not None and first >= self.fail_at:
            raise ConnectionError("redis went away")
        self.commands.append(command)
        self.log.append((self.name, first, count))
        if command["op"] == "latency":  # one sample per job: its index as the latency
            self.last_reply = {"latencies_ms": [float(i) for i in range(first, first + count)]}
        self.added.extend(range(first, first + count))
        self.redis.calls["evalsha"] += count
        self.redis.usec["evalsha"] += 3 * count
        self.redis.cpu_s += 1e-5 * count
        return self.seconds_per_job * count


def as_suite_redis(redis: FakeRedis) -> SuiteRedis:
    return redis  # type: ignore[return-value]  # only snapshot() is used


def test_slices_cover_every_job_once() -> None:
    assert slice_bounds(10, 4) == [(0, 4), (4, 4), (8, 2)]
    assert slice_bounds(8, 4) == [(0, 4), (4, 4)]


@pytest.mark.parametrize("start", [0, 1, 5])
def test_every_side_follows_every_other_equally_often(start: int) -> None:
    sides = ["bullmq", "node", "queuekit"]
    order = TurnOrder(start)

    turns = [order.next(sides) for _ in range(40)]

    assert all(sorted(turn) == sorted(sides) for turn in turns)
    stream = [side for turn in turns for side in turn]
    pairs = list(pairwise(stream))
    assert all(before != after for before, after in pairs)  # no side after itself
    counts = [pairs.count((before, after)) for before in sides for after in sides
              if before != after]
    assert max(counts) - min(counts) <= 1  # a plain rotation would give 0 for three pairs
    assert sum(order.pairs.values()) == len(pairs)


def test_the_turn_order_stays_balanced_when_a_side_drops_out() -> None:
    order = TurnOrder()
    assert order.next([]) == []
    first = [order.next(["a", "b", "c"]) for _ in range(3)]
    rest = [order.next(["a", "c"]) for _ in range(4)]

    assert first == [["a", "b", "c"], ["a", "c", "b"], ["a", "b", "c"]]
    # "c" ended the last turn of three: the two left alternate from "a" on.
    assert rest == [["a", "c"]] * 4
    assert order.pairs[("c", "a")] == order.pairs[("a", "c")] == 5


@pytest.mark.parametrize(
    "scenario", sorted(name for name, spec in SLICES.items() if spec.prepare is None))
async def test_sides_take_turns_and_add_every_job(scenario: str) -> None:
    redis = FakeRedis()
    log: list[tuple[str, int, int]] = []
    fast = FakeSession("fast", log, redis, 1e-4)
    slow = FakeSession("slow", log, redis, 2e-4)
    spec = SLICES[scenario]
    jobs = spec.size * 3 + 1

    totals = await time_interleaved(as_suite_redis(redis), {"fast": fast, "slow": slow},
                                    jobs, spec, run=0, warm_up=0)

    assert fast.added == list(range(jobs)) and slow.added == list(range(jobs))
    assert {command["op"] for command in fast.commands} == {spec.op}
    assert all(command.items() >= spec.extra.items() for command in fast.commands)
    # Turn by turn both sides add the same slice, each after the other (a b a b ...).
    assert [name for name, _, _ in log] == ["fast", "slow"] * 4
    assert totals["fast"].seconds == pytest.approx(1e-4 * jobs)
    assert totals["slow"].seconds == pytest.approx(2e-4 * jobs)
    cost = totals["fast"].cost
    # Only the side's own scripts: neither the other side's nor the snapshots' INFO calls.
    assert per_job_calls(cost, jobs) == {"evalsha": 1.0}
    assert redis_usec_per_job(cost, jobs) == pytest.approx(3.0)
    assert cost.cpu_s == pytest.approx(1e-5 * jobs)


async def test_a_failing_side_drops_out_and_the_others_finish() -> None:
    redis = FakeRedis()
    log: list[tuple[str, int, int]] = []
    spec = SliceSpec(10, "add-one")
    good = FakeSession("good", log, redis, 1e-4)
    bad = FakeSession("bad", log, redis, 1e-4, fail_at=20)

    totals = await time_interleaved(as_suite_redis(redis), {"good": good, "bad": bad},
                                    50, spec, run=1, warm_up=0)

    assert good.added == list(range(50))
    assert bad.added == list(range(20))
    assert totals["bad"].error == "ConnectionError: redis went away"
    assert totals["good"].error is None and len(totals["good"].costs) == 5


class RecordingProducer:
    events_key = "bull:q:events"

    def __init__(self) -> None:
        self.added: list[int] = []
        self.bulks: list[tuple[int, int]] = []

    async def add_one(self, index: int) -> str:
        self.added.append(index)
        return str(index)

    async def add_bulk(self, first: int, count: int) -> None:
        self.bulks.append((first, count))

    async def wait_finished(self, job_id: str) -> None:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        pass


async def test_the_producer_process_answers_each_command_with_its_slice(
    capsys: pytest.CaptureFixture[str],
) -> None:
    producer = RecordingProducer()
    next_line = iter_lines(
        '{"op": "add-one", "first": 0, "count": 3}\n',
        "\n",
        '{"op": "in-flight", "first": 3, "count": 4, "window": 2}\n',
        '{"op": "bulk", "first": 7, "count": 5, "chunk": 2}\n',
    )

    assert await serve(producer, next_line) == 3
    assert sorted(producer.added) == list(range(7))
    assert producer.bulks == [(7, 2), (9, 2), (11, 1)]
    replies = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [reply["event"] for reply in replies] == ["slice"] * 3
    assert all(reply["seconds"] >= 0 for reply in replies)

    with pytest.raises(ValueError, match="unknown op 'add-many'"):
        await serve(producer, iter_lines('{"op": "add-many", "first": 0, "count": 1}\n'))


def iter_lines(*texts: str) -> Callable[[], Awaitable[str]]:
    pending = [*texts, ""]

    async def next_line() -> str:
        return pending.pop(0)

    return next_line


async def test_a_workers_fill_goes_before_its_slice_and_outside_its_cost() -> None:
    redis = FakeRedis()
    log: list[tuple[str, int, int]] = []
    worker = FakeSession("worker", log, redis, 1e-4)
    spec = SLICES["process_c1"]

    totals = await time_interleaved(as_suite_redis(redis), {"worker": worker}, 2500, spec,
                                    run=0, warm_up=0)

    ops = [(command["op"], command["first"], command["count"]) for command in worker.commands]
    assert ops == [("fill", 0, 1000), ("process", 0, 1000), ("fill", 1000, 1000),
                   ("process", 1000, 1000), ("fill", 2000, 500), ("process", 2000, 500)]
    # Only the process commands are timed and counted (the fake costs Redis either way).
    assert totals["worker"].seconds == pytest.approx(1e-4 * 2500)
    assert per_job_calls(totals["worker"].cost, 2500) == {"evalsha": 1.0}


class FakeWorkerSession:
    """Processes the producer's jobs only while the queue is not paused."""

    def __init__(self, producer: RecordingProducer) -> None:
        self.producer = producer
        self.paused_log: list[bool] = []
        self.on_processed: Callable[[], None] | None = None
        self.done = 0

    async def start(self, concurrency: int, on_processed: Callable[[], None]) -> None:
        assert self.paused_log == [True], "the queue is paused before the worker starts"
        self.on_processed = on_processed

    async def set_paused(self, paused: bool) -> None:
        self.paused_log.append(paused)
        if not paused:
            assert self.on_processed is not None
            for _ in range(sum(count for _, count in self.producer.bulks) - self.done):
                self.done += 1
                self.on_processed()

    async def job_counts(self) -> JobCounts:
        waiting = sum(count for _, count in self.producer.bulks) - self.done
        return JobCounts(waiting=waiting, active=0, delayed=0, failed=0)

    async def aclose(self) -> None:
        pass


async def test_the_worker_process_fills_while_paused_and_times_only_processing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    producer = RecordingProducer()
    session = FakeWorkerSession(producer)
    lines = iter_lines(
        '{"op": "fill", "first": 0, "count": 3}\n',
        '{"op": "process", "first": 0, "count": 3}\n',
        '{"op": "fill", "first": 3, "count": 2}\n',
        '{"op": "process", "first": 3, "count": 2}\n',
    )
    replies: list[dict[str, Any]] = []

    report = await serve_worker_slices(session, producer, concurrency=1, lines=lines,
                                       emit=replies.append)

    assert producer.bulks == [(0, 3), (3, 2)]
    assert report.processed == 5 and session.done == 5
    # Paused at start, then resumed for each process and paused again after it.
    assert session.paused_log == [True, False, True, False, True]
    assert [reply["event"] for reply in replies] == ["ready"] + ["slice"] * 4
    capsys.readouterr()

    with pytest.raises(ValueError, match="unknown op 'drain'"):
        await serve_worker_slices(FakeWorkerSession(producer), producer, concurrency=1,
                                  lines=iter_lines('{"op": "drain", "count": 1}\n'),
                                  emit=replies.append)


async def test_latency_samples_take_turns_and_the_warm_up_is_dropped() -> None:
    redis = FakeRedis()
    log: list[tuple[str, int, int]] = []
    sides = {"a": FakeSession("a", log, redis, 1e-4), "b": FakeSession("b", log, redis, 1e-4)}

    found = await sample_interleaved(sides, "stream", samples=120, warmup=20, run=0)

    # The warm-up batch first (its samples dropped), then batches of 50, 50, 20 in turns.
    assert log == [("a", 0, 20), ("b", 0, 20), ("a", 0, 50), ("b", 0, 50),
                   ("a", 50, 50), ("b", 50, 50), ("a", 100, 20), ("b", 100, 20)]
    assert {command["wait"] for command in sides["a"].commands} == {"stream"}
    assert found["a"].values == [float(i) for i in range(120)]
    assert found["b"].error is None and len(found["b"].values) == 120


async def test_the_warm_up_goes_first_untimed_and_past_the_timed_jobs() -> None:
    redis = FakeRedis()
    log: list[tuple[str, int, int]] = []
    sides = {"a": FakeSession("a", log, redis, 1e-4), "b": FakeSession("b", log, redis, 1e-4)}
    spec = SliceSpec(100, "add-one")

    totals = await time_interleaved(as_suite_redis(redis), sides, 300, spec, run=0,
                                    warm_up=150)

    # Warm-up turns (jobs 300..449, in slices of 100), then the timed ones, in one stream.
    assert log == [("a", 300, 100), ("b", 300, 100), ("a", 400, 50), ("b", 400, 50),
                   ("a", 0, 100), ("b", 0, 100), ("a", 100, 100), ("b", 100, 100),
                   ("a", 200, 100), ("b", 200, 100)]
    # Only the timed jobs count, in time and in Redis cost.
    assert totals["a"].seconds == pytest.approx(1e-4 * 300)
    assert per_job_calls(totals["a"].cost, 300) == {"evalsha": 1.0}
