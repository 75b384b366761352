"""The attempt guard and the cancel registry, and the new job options."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from queuekit import AttemptTimeoutError, JobCancelledError, JobContext, JobOptions
from queuekit.cancellation import CANCEL_MEMORY_S, CancelRegistry
from queuekit.errors import PayloadValidationError
from queuekit.flows import parse_job_key
from queuekit.jobs import validate_model
from queuekit.redis.wire import bullmq_options, job_timeout
from queuekit.settings import JobDefaults


class _Reporter:
    async def update_progress(self, progress: Any) -> None: ...

    async def log(self, text: str) -> None: ...


def context() -> JobContext[Any]:
    return JobContext(id="1", name="n", queue="q", data=None, attempts_made=0,
                      max_attempts=1, reporter=_Reporter())


async def test_a_request_that_arrives_before_the_attempt_cancels_it_at_start() -> None:
    registry = CancelRegistry()
    assert registry.request("1") is False  # not running yet: remembered
    ctx = context()
    guard = registry.start("1", ctx, 0)
    assert guard.reason == "cancelled" and ctx.cancelled
    assert isinstance(guard.error(), JobCancelledError)
    assert str(guard.error()) == "cancelled"
    registry.finish("1", guard)
    assert registry.running == {}


async def test_an_old_request_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = CancelRegistry()
    now = [1000.0]
    monkeypatch.setattr("queuekit.cancellation.time.monotonic", lambda: now[0])
    registry.request("old")
    now[0] += CANCEL_MEMORY_S + 1
    registry.request("other")  # requests are pruned when a new one comes in
    guard = registry.start("old", context(), 0)
    assert guard.reason is None
    registry.finish("old", guard)


async def test_a_request_without_memory_is_dropped() -> None:
    registry = CancelRegistry()
    assert registry.request("1", remember=False) is False
    guard = registry.start("1", context(), 0)
    assert guard.reason is None
    registry.finish("1", guard)


async def test_the_timeout_cancels_the_task_and_says_how_long() -> None:
    registry = CancelRegistry()
    ctx = context()

    async def attempt() -> str | None:
        guard = registry.start("1", ctx, 20)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return guard.reason
        finally:
            registry.finish("1", guard)
        return None

    assert await asyncio.wait_for(attempt(), 2) == "timeout"
    assert ctx.cancelled
    assert str(AttemptTimeoutError(20)) == "job timed out after 20 ms"


def test_failure_options_are_exclusive_and_reach_the_wire() -> None:
    with pytest.raises(PayloadValidationError) as caught:
        validate_model(JobOptions, {"failParentOnFailure": True,
                                    "remove_dependency_on_failure": True}, "job options")
    assert "cannot be used together" in str(caught.value)
    resolved = JobOptions(timeout=1500, fail_parent_on_failure=True).resolve(JobDefaults())
    wire = bullmq_options(resolved)
    assert wire["timeout"] == 1500 and wire["failParentOnFailure"] is True
    assert "ignoreDependencyOnFailure" not in wire
    assert job_timeout(wire) == 1500
    assert job_timeout({"timeout": "soon"}) == job_timeout({"timeout": -1}) == 0


def test_job_keys_are_parsed_as_bullmq_builds_them() -> None:
    assert parse_job_key("bull", "bull:bank-sync:abc-1") == ("bank-sync", "abc-1")
    assert parse_job_key("bull", "other:bank-sync:1") is None
    assert parse_job_key("bull", "bull:nokey") is None
