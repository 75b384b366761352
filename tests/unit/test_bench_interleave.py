"""The benchmark's interleaved producer timing: every side adds every job once, the sides
take turns slice by slice with the first one changing, a failing side drops out alone,
and the Redis cost of each side's slices is summed without the suite's own INFO calls."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from benchmarks.commandstats import RedisSnapshot, SuiteRedis, per_job_calls, redis_usec_per_job
from benchmarks.interleave import SLICES, SliceSpec, slice_bounds, time_interleaved, turn_order
from benchmarks.producer_proc import serve


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


class FakeAdder:
    def __init__(self, name: str, log: list[tuple[str, int, int]], redis: FakeRedis,
                 seconds_per_job: float, fail_at: int | None = None) -> None:
        self.name, self.log, self.redis = name, log, redis
        self.seconds_per_job, self.fail_at = seconds_per_job, fail_at
        self.added: list[int] = []

    def _add(self, first: int, count: int) -> float:
        if self.fail_at is not None and first >= self.fail_at:
            raise ConnectionError("redis went away")
        self.log.append((self.name, first, count))
        self.added.extend(range(first, first + count))
        self.redis.calls["evalsha"] += count
        self.redis.usec["evalsha"] += 3 * count
        self.redis.cpu_s += 1e-5 * count
        return self.seconds_per_job * count

    async def add_one(self, first: int, count: int) -> float:
        return self._add(first, count)

    async def add_in_flight(self, first: int, count: int, window: int) -> float:
        assert window == 50
        return self._add(first, count)

    async def add_bulk(self, first: int, count: int, chunk: int) -> float:
        assert count <= chunk
        return self._add(first, count)


def as_suite_redis(redis: FakeRedis) -> SuiteRedis:
    return redis  # type: ignore[return-value]  # only snapshot() is used


def test_slices_cover_every_job_once() -> None:
    assert slice_bounds(10, 4) == [(0, 4), (4, 4), (8, 2)]
    assert slice_bounds(8, 4) == [(0, 4), (4, 4)]
    assert turn_order(["a", "b", "c"], 4) == ["b", "c", "a"]
    assert turn_order([], 3) == []


@pytest.mark.parametrize("scenario", sorted(SLICES))
async def test_sides_take_turns_and_add_every_job(scenario: str) -> None:
    redis = FakeRedis()
    log: list[tuple[str, int, int]] = []
    fast = FakeAdder("fast", log, redis, 1e-4)
    slow = FakeAdder("slow", log, redis, 2e-4)
    spec = SLICES[scenario]
    jobs = spec.size * 3 + 1

    totals = await time_interleaved(as_suite_redis(redis), {"fast": fast, "slow": slow},
                                    jobs, spec, run=0)

    assert fast.added == list(range(jobs)) and slow.added == list(range(jobs))
    # Turn by turn both sides add the same slice, and who goes first alternates.
    assert [name for name, _, _ in log] == ["fast", "slow", "slow", "fast"] * 2
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
    spec = SliceSpec(10, lambda adder, first, count: adder.add_one(first, count))
    good = FakeAdder("good", log, redis, 1e-4)
    bad = FakeAdder("bad", log, redis, 1e-4, fail_at=20)

    totals = await time_interleaved(as_suite_redis(redis), {"good": good, "bad": bad},
                                    50, spec, run=1)

    assert good.added == list(range(50))
    assert bad.added == list(range(20))
    assert totals["bad"].error == "ConnectionError: redis went away"
    assert totals["good"].error is None and len(totals["good"].slices) == 5


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
