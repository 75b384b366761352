"""The async circuit breaker over pybreaker, driven by fake calls (no network)."""

from __future__ import annotations

import asyncio
import time

import pybreaker
import pytest

from queuekit import CircuitOpenError, QueueUnavailableError
from queuekit.redis.breaker import AsyncCircuitBreaker, make_breaker
from queuekit.settings import BreakerSettings


async def refused() -> None:
    raise ConnectionRefusedError("Connection refused")


async def ok() -> str:
    return "ok"


def breaker(fail_max: int = 3, reset: float = 60.0) -> AsyncCircuitBreaker:
    return AsyncCircuitBreaker(make_breaker(BreakerSettings(fail_max=fail_max,
                                                            reset_timeout=reset)), "test redis")


async def test_opens_after_fail_max_and_fails_fast() -> None:
    guard = breaker(fail_max=3)
    for _ in range(3):
        with pytest.raises(QueueUnavailableError):
            await guard.call(refused)
    assert guard.state == "open"
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1

    with pytest.raises(CircuitOpenError, match="after 3 failures"):
        await guard.call(counted)
    assert calls == 0


async def test_other_errors_pass_through_uncounted() -> None:
    guard = breaker(fail_max=1)

    async def bad() -> None:
        raise ValueError("not a connection problem")

    with pytest.raises(ValueError, match="connection problem"):
        await guard.call(bad)
    assert guard.state == "closed"
    assert guard.fail_counter == 0
    assert await guard.call(ok) == "ok"


async def test_half_open_admits_exactly_one_trial() -> None:
    guard = breaker(fail_max=1, reset=0.05)
    with pytest.raises(QueueUnavailableError):
        await guard.call(refused)
    assert guard.state == "open"
    await asyncio.sleep(0.06)  # the breaker's own reset timeout must pass
    assert guard.state == "half-open"
    gate = asyncio.Event()
    trials = 0

    async def trial() -> str:
        nonlocal trials
        trials += 1
        await gate.wait()
        return "ok"

    first = asyncio.ensure_future(guard.call(trial))
    await asyncio.sleep(0)
    others = await asyncio.gather(*(guard.call(trial) for _ in range(10)),
                                  return_exceptions=True)
    assert all(isinstance(o, CircuitOpenError) for o in others)
    gate.set()
    assert await first == "ok"
    assert trials == 1
    assert guard.state == "closed"


async def test_failed_trial_opens_again() -> None:
    guard = breaker(fail_max=1, reset=0.05)
    with pytest.raises(QueueUnavailableError):
        await guard.call(refused)
    await asyncio.sleep(0.06)
    with pytest.raises(QueueUnavailableError):
        await guard.call(refused)
    assert guard.breaker.current_state == pybreaker.STATE_OPEN
    started = time.perf_counter()
    with pytest.raises(CircuitOpenError):
        await guard.call(ok)
    assert time.perf_counter() - started < 0.005


async def test_start_runs_the_synchronous_part_now_and_counts_failures_as_call() -> None:
    guard = breaker(fail_max=2)
    written: list[str] = []

    def write(value: str) -> asyncio.Future[str]:  # a command's write, then its reply
        written.append(value)
        reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        reply.set_result(value.upper())
        return reply

    pending = guard.start(write, "a")
    assert written == ["a"]  # before anything is awaited
    assert await pending == "A"

    def lost(value: str) -> asyncio.Future[str]:
        raise ConnectionResetError("Connection reset by peer")

    with pytest.raises(QueueUnavailableError, match="reset by peer"):  # raised at once
        guard.start(lost, "b")
    with pytest.raises(QueueUnavailableError, match="refused"):  # raised when awaited
        await guard.start(lambda: refused())
    assert guard.state == "open"  # both were counted
    with pytest.raises(CircuitOpenError):
        await guard.start(write, "c")
    assert written == ["a"]  # an open breaker sends nothing


async def test_start_while_counting_failures_starts_when_awaited() -> None:
    guard = breaker(fail_max=3)
    with pytest.raises(QueueUnavailableError):
        await guard.call(refused)
    started: list[str] = []

    async def add() -> str:
        started.append("add")
        return "1"

    pending = guard.start(add)
    assert started == []  # counted calls go through pybreaker, when awaited
    assert await pending == "1"
    assert guard.fail_counter == 0  # a success resets the count
