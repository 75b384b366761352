"""BullMQ's wire format: camelCase job options, worker options, and their constants.

The rest of queuekit speaks typed, snake_case records (``ResolvedOptions``); this module
is where they become what BullMQ (Python or Node) stores and reads.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from queuekit.jobs import Deduplication, ResolvedOptions, Retention
from queuekit.settings import KeepJobs, WorkerLimiter, WorkerSettings

#: Redis checks blocking timeouts on its ``hz`` timer (10 per second by default), so a
#: ``BZPOPMIN`` timeout can end up to 100 ms late. Workers ask Redis to wake them this
#: much early and wait the rest on the local clock, so delays are honoured to a few ms.
REDIS_TIMER_SLACK = 0.1
#: BullMQ never blocks longer than this (seconds), so a lost connection is noticed.
MAX_BLOCK = 10.0

#: What bullmq's stalled check stores (``defa``) on a job that stalled too often; the
#: next worker to fetch the job fails it with that reason instead of running it.
STALLED_TOO_OFTEN = "job stalled more than allowable limit"

#: The short name of ``deduplication`` in BullMQ's stored options.
DEDUP_OPT = "de"
#: What BullMQ's manual rate limit (``Queue.rateLimit``) stores in the limiter key:
#: Number.MAX_SAFE_INTEGER, more than any ``max``.
MANUAL_RATE_LIMIT = 9007199254740991
#: Node's worker waits at most this long (ms) on a rate limit before polling again.
MAX_RATE_LIMIT_WAIT = 30_000


def stalled_reason(stalled: int, max_stalled: int) -> str:
    """The failed reason of a job that stalled ``stalled`` times, over the limit."""
    return (
        f"{STALLED_TOO_OFTEN}: it was running {stalled} times when its worker stopped "
        "renewing its lock (the process crashed, was killed, or blocked its event loop "
        f"longer than worker.lock_duration); worker.max_stalled_count is {max_stalled}"
    )


def worker_name() -> str:
    """A name for one worker, unique across hosts and processes (in its Redis client name)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _retention(value: Retention) -> bool | int | dict[str, int]:
    if isinstance(value, KeepJobs):
        return value.to_bullmq()
    return value


def bullmq_options(options: ResolvedOptions) -> dict[str, Any]:
    """BullMQ's ``JobsOptions`` for resolved options (only what differs from BullMQ's own
    defaults is written, as bullmq's ``Queue.add`` does)."""
    opts: dict[str, Any] = {
        "attempts": options.attempts,
        "backoff": {"type": options.backoff.type, "delay": options.backoff.delay},
        "removeOnComplete": _retention(options.remove_on_complete),
        "removeOnFail": _retention(options.remove_on_fail),
    }
    if options.delay:
        opts["delay"] = options.delay
    if options.priority:
        opts["priority"] = options.priority
    if options.job_id is not None:
        opts["jobId"] = options.job_id
    if options.lifo:
        opts["lifo"] = True
    if options.deduplication is not None:
        opts[DEDUP_OPT] = dedup_options(options.deduplication)
    if options.timeout:
        # Not a BullMQ 6 option: Node keeps it in the job's opts and ignores it.
        opts["timeout"] = options.timeout
    for name, value in _FLOW_POLICIES.items():
        if getattr(options, name):
            opts[value] = True
    return opts


def dedup_options(dedup: Deduplication) -> dict[str, Any]:
    """BullMQ's ``deduplication`` options (unset fields left out, as Node writes them)."""
    opts: dict[str, Any] = {"id": dedup.id}
    if dedup.ttl is not None:
        opts["ttl"] = dedup.ttl
    if dedup.extend:
        opts["extend"] = True
    if dedup.replace:
        opts["replace"] = True
    return opts


def limiter_options(limiter: WorkerLimiter | None) -> dict[str, int] | None:
    """BullMQ's worker ``limiter`` ({max, duration}), or None."""
    return None if limiter is None else {"max": limiter.max, "duration": limiter.duration}


#: The flow failure options by BullMQ's long name (bullmq's ``Job`` stores them short,
#: ``fpof`` / ``idof`` / ``rdof``, in the job's opts and in its ``parent`` JSON).
_FLOW_POLICIES = {
    "fail_parent_on_failure": "failParentOnFailure",
    "ignore_dependency_on_failure": "ignoreDependencyOnFailure",
    "remove_dependency_on_failure": "removeDependencyOnFailure",
}


def job_timeout(opts: Mapping[str, Any] | None) -> int:
    """A job's queuekit ``timeout`` in ms from its stored opts (0: none, or unusable)."""
    value = (opts or {}).get("timeout")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return 0
def with_trace_metadata(opts: Mapping[str, Any], metadata: str | None) -> Mapping[str, Any]:
    """``opts`` carrying a job's trace context as BullMQ 6's ``telemetry.metadata`` is
    stored: ``tm``, the JSON string of a W3C carrier (what ``bullmq-otel`` reads)."""
    if metadata is None:
        return opts
    return {**opts, "tm": metadata}


def trace_metadata(opts: Mapping[str, Any]) -> str | None:
    """The trace context a job's options carry (``tm``), None when absent or when the
    producer opted out (``omc``: ``telemetry.omitContext``)."""
    metadata = opts.get("tm")
    if metadata is None or metadata.__class__ is not str or opts.get("omc"):
        return None
    return metadata


def bullmq_job_opts(opts: Mapping[str, Any]) -> dict[str, Any]:
    """The options a bullmq ``Job`` stores for ``opts`` (its ``attempts``/``delay`` defaults,
    backoff normalised: an int is a fixed delay)."""
    final: dict[str, Any] = {"attempts": 0, "delay": 0, **opts}
    backoff = opts.get("backoff")
    if isinstance(backoff, int) and not isinstance(backoff, bool):
        backoff = {"type": "fixed", "delay": backoff}
    final["backoff"] = backoff or None
    return final


def keep_jobs(remove: object) -> dict[str, Any]:
    """BullMQ's ``keepJobs`` for a ``removeOnComplete`` / ``removeOnFail`` option."""
    if isinstance(remove, bool):
        return {"count": 0} if remove else {"count": -1}
    if isinstance(remove, int):
        return {"count": remove}
    if isinstance(remove, Mapping):
        return dict(remove)
    return {"count": -1}


def max_attempts(opts: Mapping[str, Any] | None) -> int:
    """The ``attempts`` of a job's BullMQ options (1 when unset or 0)."""
    return int((opts or {}).get("attempts", 1) or 1)


def bullmq_worker_options(settings: WorkerSettings, prefix: str, concurrency: int,
                          name: str, queue: str = "") -> dict[str, Any]:
    """bullmq ``WorkerOptions`` from queuekit's worker settings."""
    limiter = limiter_options(settings.limiter.get(queue))
    return {
        **({"limiter": limiter} if limiter else {}),
        "prefix": prefix,
        "concurrency": concurrency,
        "lockDuration": settings.lock_duration,
        "stalledInterval": settings.stalled_interval,
        "maxStalledCount": settings.max_stalled_count,
        "drainDelay": settings.drain_delay,
        # bullmq waits 15 s after a connection error before fetching again.
        "runRetryDelay": settings.run_retry_delay,
        # A name per worker, so count_workers tells two processes' workers apart.
        "name": name,
        "autorun": False,
    }


def repeat_options(every: int | None, pattern: str | None, tz: str | None, limit: int | None,
                   start_date: int | None, end_date: int | None,
                   immediately: bool) -> dict[str, Any]:
    """BullMQ's ``RepeatOptions`` of a job scheduler (only the fields that are set)."""
    opts: dict[str, Any] = {"every": every, "pattern": pattern, "tz": tz, "limit": limit,
                            "startDate": start_date, "endDate": end_date}
    if immediately:
        opts["immediately"] = True
    return {key: value for key, value in opts.items() if value is not None}


def scheduler_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The snake_case fields of a scheduler record as BullMQ's ``getJobScheduler(s)``
    returns it (``key``, ``iterationCount``, ``next``, ``template.data`` ...)."""
    template = record.get("template") or {}
    return {
        "id": str(record["key"]), "name": str(record.get("name") or record["key"]),
        "every": record.get("every"), "pattern": record.get("pattern"),
        "tz": record.get("tz"), "limit": record.get("limit"),
        "iteration_count": int(record.get("iterationCount") or 0),
        "next_run_at": record.get("next"), "start_date": record.get("startDate"),
        "end_date": record.get("endDate"), "data": template.get("data", {}),
    }
