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
from queuekit.redis.wire import job_timeout, keep_jobs, max_attempts, trace_metadata


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
    parsed = _parsed_opts(fields.get("opts") or "{}")  # defined below; read at call time
    opts = parsed.opts
    returnvalue = fields.get("returnvalue")
    stack = fields.get("stacktrace")
    return RawJob(
        id=job_id,
        name=str(fields.get("name")),
        data=json.loads(fields.get("data") or "{}"),
        state=state,
        max_attempts=parsed.max_attempts,
        progress=json.loads(fields.get("progress") or "0"),
        attempts_made=int(fields.get("attemptsMade") or fields.get("atm") or 0),
        return_value=None if returnvalue is None else getReturnValue(returnvalue),
        failed_reason=fields.get("failedReason") or None,
        timestamp=int(fields.get("timestamp") or 0),
        processed_on=int(fields.get("processedOn") or 0),
        finished_on=int(fields.get("finishedOn") or 0),
        delay=int(opts.get("delay") or fields.get("delay") or 0),
        priority=int(fields.get("priority") or 0),
        timeout=parsed.timeout,
        trace_metadata=parsed.trace_metadata,
        stacktrace=tuple(json.loads(stack)) if stack else (),
    )


def next_job_data(raw: Any) -> tuple[dict[str, Any] | None, Any, Any, Any]:
    """(job hash, job id, rate-limit ttl, next delayed time) of a ``moveToActive`` or
    fetch-next answer: bullmq's ``raw2NextJobData``, with the hash as a dict."""
    if not raw:
        return None, None, None, None
    fields = raw[0]
    data = dict(zip(it := iter(fields), it, strict=True)) if fields else None
    if len(raw) == 2:
        return data, raw[1], None, None
    return data, raw[1], raw[2], raw[3]


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

class ParsedOpts:
    """One options JSON text, parsed once: read-only options and what the hot path
    derives from them."""

    __slots__ = ("keep_jobs", "lean", "max_attempts", "opts", "timeout", "trace_metadata")

    def __init__(self, text: str) -> None:
        opts = json.loads(text)
        self.opts: Mapping[str, Any] = MappingProxyType(opts)
        #: Whether the lean path can handle jobs of these options.
        self.lean = not any(name in text for name in _QUOTED_BULL_ONLY_OPTS)
        self.max_attempts = max_attempts(opts)
        self.timeout = job_timeout(opts)
        self.trace_metadata = trace_metadata(opts)
        #: BullMQ's ``keepJobs`` of the completion (read-only: shared by the jobs).
        self.keep_jobs: Mapping[str, Any] = MappingProxyType(
            keep_jobs(opts.get("removeOnComplete", False)))


#: Parsed options by their JSON text: the jobs of one producer share it, so a worker
#: parses each distinct text once.
_OPTS: dict[str, ParsedOpts] = {}
_OPTS_KEPT = 64


def _parsed_opts(text: str) -> ParsedOpts:
    found = _OPTS.get(text)
    if found is None:
        if len(_OPTS) >= _OPTS_KEPT:
            _OPTS.clear()
        found = _OPTS[text] = ParsedOpts(text)
    return found


class LeanJob:
    """A job read straight from its hash: what the hot path needs, nothing more.

    The fields mirror bullmq's ``Job`` (same names, same parsing); :meth:`bull` builds the
    real ``Job`` for the rare paths (failure, progress, logs).
    """

    __slots__ = ("_bull", "_host", "attempts", "attemptsMade", "data", "deferredFailure",
                 "delay", "failedReason", "finishedOn", "id", "name", "opts", "parsed",
                 "priority",
                 "processedOn", "progress", "raw", "repeatJobKey", "returnvalue",
                 "stalledCounter", "timestamp", "token")

    def __init__(self, host: JobHost, raw: dict[str, Any], job_id: str, token: str,
                 parsed: ParsedOpts | None = None) -> None:
        self._host = host
        self._bull: Any = None
        self.raw = raw
        self.id = job_id
        self.token = token
        self.name = raw.get("name")
        self.data = json.loads(raw.get("data", "{}"))
        if parsed is None:
            parsed = _parsed_opts(raw.get("opts") or "{}")
        self.parsed = parsed
        self.opts = parsed.opts
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

    @classmethod
    def read(cls, host: JobHost, raw: dict[str, Any], job_id: str,
             token: str) -> LeanJob | None:
        """The lean job of this hash, or None where bullmq's ``Job`` is needed."""
        if not raw.keys().isdisjoint(BULL_ONLY_FIELDS):
            return None
        parsed = _parsed_opts(raw.get("opts") or "{}")
        return cls(host, raw, job_id, token, parsed) if parsed.lean else None

    @staticmethod
    def fits(raw: dict[str, Any]) -> bool:
        """Whether the lean path can handle this job hash."""
        if not raw.keys().isdisjoint(BULL_ONLY_FIELDS):
            return False
        return _parsed_opts(raw.get("opts") or "{}").lean

    def to_raw(self, state: str) -> RawJob:
        """``raw_from_bull(self, state)``, from the values parsed with the options."""
        parsed = self.parsed
        return RawJob(
            id=self.id, name=str(self.name), data=self.data, state=state,
            max_attempts=parsed.max_attempts, progress=self.progress,
            attempts_made=self.attemptsMade, return_value=None,
            failed_reason=self.failedReason or None, timestamp=self.timestamp,
            processed_on=self.processedOn, finished_on=0,
            delay=int(parsed.opts.get("delay") or self.delay), priority=self.priority,
            timeout=parsed.timeout, trace_metadata=parsed.trace_metadata,
        )

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

