"""``raw_from_hash`` (``get_job``'s lean parse of a job hash) gives what bullmq's
``Job.fromJSON`` + ``raw_from_bull`` gave, for the hashes BullMQ writes."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import bullmq
import pytest

from queuekit.redis.jobs import raw_from_bull, raw_from_hash

BASE = {"name": "sync", "data": json.dumps({"userId": "u1"}), "timestamp": "1700000000000",
        "opts": json.dumps({"attempts": 3, "backoff": {"type": "exponential", "delay": 1000},
                            "removeOnComplete": {"count": 100}})}

HASHES: dict[str, dict[str, Any]] = {
    "waiting": BASE,
    "completed": {**BASE, "processedOn": "1700000000100", "finishedOn": "1700000000200",
                  "returnvalue": json.dumps({"success": True, "data": {"n": 2}}),
                  "atm": "1", "ats": "1", "progress": "100"},
    "failed": {**BASE, "processedOn": "1", "finishedOn": "2", "failedReason": "boom",
               "stacktrace": json.dumps(["Error: boom\n  at x", "Error: again"]),
               "attemptsMade": "3", "progress": json.dumps({"step": 2})},
    "delayed": {**BASE, "delay": "5000", "priority": "4",
                "opts": json.dumps({"delay": 5000, "priority": 4, "timeout": 250,
                                    "tm": '{"traceparent":"00-a-b-01"}'})},
    "no opts, text result": {"name": "n", "data": "[1, 2]", "returnvalue": "not json",
                             "failedReason": ""},
    "opted out of tracing": {**BASE, "opts": json.dumps({"tm": "{}", "omc": True})},
}


@pytest.mark.parametrize("state", list(HASHES))
def test_the_lean_parse_matches_bullmq(state: str) -> None:
    fields = HASHES[state]
    lean = raw_from_hash(fields, "7", state)
    queue: Any = SimpleNamespace(backend=None, qualifiedName="bull:q")  # what fromJSON reads
    bull = raw_from_bull(bullmq.Job.fromJSON(queue, fields, "7"), state)

    # Job.fromJSON drops the stack traces: the lean parse keeps them.
    assert lean.stacktrace == tuple(json.loads(fields.get("stacktrace", "[]")))
    bull.stacktrace = lean.stacktrace
    assert lean == bull


def test_lean_jobs_parse_each_options_text_once_and_read_only() -> None:
    from queuekit.redis.jobs import LeanJob

    first, second = (LeanJob(None, {**BASE}, str(n), "t")  # type: ignore[arg-type]
                     for n in (1, 2))
    assert first.opts is second.opts and first.opts["attempts"] == 3
    with pytest.raises(TypeError):
        first.opts["attempts"] = 1  # type: ignore[index]
    assert LeanJob.fits(BASE)
    # Options only bullmq's Job handles (flows, deduplication) keep the bullmq path.
    for name in ("fpof", "de", "parent"):
        assert not LeanJob.fits({**BASE, "opts": json.dumps({"attempts": 1, name: 1})})
    assert not LeanJob.fits({**BASE, "parentKey": "bull:q:1"})


@pytest.mark.parametrize("state", list(HASHES))
def test_a_lean_jobs_raw_view_is_raw_from_bull(state: str) -> None:
    from queuekit.redis.jobs import LeanJob

    job = LeanJob(None, HASHES[state], "7", "t")  # type: ignore[arg-type]
    assert job.to_raw("active") == raw_from_bull(job, "active")


def test_reading_a_lean_job_declines_where_bullmq_is_needed() -> None:
    from queuekit.redis.jobs import LeanJob

    job = LeanJob.read(None, {**BASE}, "1", "t")  # type: ignore[arg-type]
    assert job is not None and job.opts["attempts"] == 3 and job.token == "t"
    assert LeanJob.read(None, {**BASE, "parentKey": "bull:q:1"}, "1", "t") is None  # type: ignore[arg-type]
    assert LeanJob.read(None, {**BASE, "opts": json.dumps({"de": {"id": "x"}})},  # type: ignore[arg-type]
                        "1", "t") is None
