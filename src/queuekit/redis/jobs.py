"""Jobs as the Redis engines hold them: bullmq's ``Job``, or a lean read of its hash.

:func:`raw_from_bull` turns either into the backend-neutral ``RawJob``;
:class:`BullJobReporter` sends a processor's progress and log lines through bullmq.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bullmq.backends.redis_backend import RedisBackend
from bullmq.job import Job, getReturnValue

from queuekit.jobs import Progress
from queuekit.records import RawJob
from queuekit.redis.wire import job_timeout, max_attempts, trace_metadata


class BullJobReporter:
    """Progress and logs of a bullmq job (or anything with its ``updateProgress``/``log``)."""

    def __init__(self, job: Any) -> None:
        self._job = job

    async def update_progress(self, progress: Progress) -> None:
        await self._job.updateProgress(progress)

    async def log(self, text: str) -> None:
        await self._job.log(text)


def raw_from_bull(job: Any, state: str) -> RawJob:
    """Our view of a bullmq ``Job`` (or a :class:`LeanJob`)."""
    opts = job.opts or {}
    return RawJob(
        id=str(job.id),
        name=str(job.name),
        data=job.data,
        state=state,
        max_attempts=max_attempts(opts),
        progress=job.progress,
        attempts_made=int(job.attemptsMade or 0),
        return_value=job.returnvalue,
        failed_reason=job.failedReason or None,
        timestamp=int(job.timestamp or 0),
        processed_on=int(job.processedOn or 0),
        finished_on=int(job.finishedOn or 0),
        delay=int(opts.get("delay") or job.delay or 0),
        priority=int(job.priority or 0),
        timeout=job_timeout(opts),
        trace_metadata=trace_metadata(opts),
    )


def raw_from_hash(fields: dict[str, Any], job_id: str, state: str) -> RawJob:
    """Our view of a job read straight from its hash: the same values as
    ``raw_from_bull(Job.fromJSON(...))`` (tested side by side), without building bullmq's
    ``Job``, plus the stack traces of failed attempts, which ``Job.fromJSON`` drops."""
    opts: dict[str, Any] = json.loads(fields.get("opts") or "{}")
    returnvalue = fields.get("returnvalue")
    stack = fields.get("stacktrace")
    return RawJob(
        id=job_id,
        name=str(fields.get("name")),
        data=json.loads(fields.get("data") or "{}"),
        state=state,
        max_attempts=max_attempts(opts),
        progress=json.loads(fields.get("progress") or "0"),
        attempts_made=int(fields.get("attemptsMade") or fields.get("atm") or 0),
        return_value=None if returnvalue is None else getReturnValue(returnvalue),
        failed_reason=fields.get("failedReason") or None,
        timestamp=int(fields.get("timestamp") or 0),
        processed_on=int(fields.get("processedOn") or 0),
        finished_on=int(fields.get("finishedOn") or 0),
        delay=int(opts.get("delay") or fields.get("delay") or 0),
        priority=int(fields.get("priority") or 0),
        timeout=job_timeout(opts),
        trace_metadata=trace_metadata(opts),
        stacktrace=tuple(json.loads(stack)) if stack else (),
    )


class JobHost:
    """What a bullmq ``Job`` needs of its queue: backend, names and worker options."""

    def __init__(self, backend: RedisBackend, name: str, opts: dict[str, Any]) -> None:
        self.backend = backend
        self.name = name
        self.qualifiedName = backend.qualifiedName
        self.opts = opts


#: Fields of a job hash (and of its encoded options) that need bullmq's own ``Job``:
#: flows (parents), job schedulers, deduplication. Such jobs take bullmq's path.
BULL_ONLY_FIELDS = ("parentKey", "parent")
BULL_ONLY_OPTS = ("fpof", "cpof", "idof", "rdof", "parent", "de")
_QUOTED_BULL_ONLY_OPTS = tuple(f'"{name}"' for name in BULL_ONLY_OPTS)

#: Parsed options by their JSON text: the jobs of one producer share it, so a worker
#: parses each distinct text once. Read-only views (every job of that text shares one).
_OPTS: dict[str, tuple[Mapping[str, Any], bool]] = {}
_OPTS_KEPT = 64


def _parsed_opts(text: str) -> tuple[Mapping[str, Any], bool]:
    """(the options, whether the lean path can handle them) of one opts JSON text."""
    found = _OPTS.get(text)
    if found is None:
        if len(_OPTS) >= _OPTS_KEPT:
            _OPTS.clear()
        lean = not any(name in text for name in _QUOTED_BULL_ONLY_OPTS)
        found = _OPTS[text] = (MappingProxyType(json.loads(text)), lean)
    return found


class LeanJob:
    """A job read straight from its hash: what the hot path needs, nothing more.

    The fields mirror bullmq's ``Job`` (same names, same parsing); :meth:`bull` builds the
    real ``Job`` for the rare paths (failure, progress, logs).
    """

    __slots__ = ("_bull", "_host", "attempts", "attemptsMade", "data", "deferredFailure",
                 "delay", "failedReason", "finishedOn", "id", "name", "opts", "priority",
                 "processedOn", "progress", "raw", "repeatJobKey", "returnvalue",
                 "stalledCounter", "timestamp", "token")

    def __init__(self, host: JobHost, raw: dict[str, Any], job_id: str, token: str) -> None:
        self._host = host
        self._bull: Any = None
        self.raw = raw
        self.id = job_id
        self.token = token
        self.name = raw.get("name")
        self.data = json.loads(raw.get("data", "{}"))
        self.opts = _parsed_opts(raw.get("opts") or "{}")[0]
        self.attempts = self.opts.get("attempts", 1)
        self.attemptsMade = int(raw.get("attemptsMade") or raw.get("atm") or 0)
        self.timestamp = int(raw.get("timestamp") or 0)
        self.processedOn = int(raw.get("processedOn") or 0)
        self.finishedOn = 0
        self.progress = json.loads(raw["progress"]) if "progress" in raw else 0
        self.delay = int(raw.get("delay") or 0)
        self.priority = int(raw.get("priority") or 0)
        self.deferredFailure = raw.get("defa")
        self.stalledCounter = int(raw.get("stc") or 0)
        self.failedReason = raw.get("failedReason")
        self.returnvalue = None
        self.repeatJobKey = raw.get("rjk")  # the job scheduler whose run this is

    @staticmethod
    def fits(raw: dict[str, Any]) -> bool:
        """Whether the lean path can handle this job hash."""
        if any(field in raw for field in BULL_ONLY_FIELDS):
            return False
        return _parsed_opts(raw.get("opts") or "{}")[1]

    def bull(self) -> Any:
        """bullmq's ``Job`` for this job (built once)."""
        if self._bull is None:
            self._bull = Job.fromJSON(self._host, self.raw, self.id)
            self._bull.token = self.token
        return self._bull

    async def updateProgress(self, progress: Any) -> None:  # noqa: N802 - bullmq's name
        await self.bull().updateProgress(progress)

    async def log(self, text: str) -> None:
        await self.bull().log(text)

