"""Job schedulers (BullMQ's ``upsertJobScheduler``): a job produced every N ms or on a cron
pattern, one pending run at a time.

:class:`SchedulesMixin` holds the public methods of :class:`~queuekit.service.QueueService`
(validate, log, call a backend hook); :class:`JobSchedulerInfo` is what they return;
:func:`next_cron_run` is the cron step both backends use (croniter with the seconds field
first for six fields, as cron-parser on the Node side and bullmq's Python port).
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from queuekit.errors import ConfigurationError, FieldError, PayloadValidationError
from queuekit.records import JobData, OptionsArg, PreparedJob
from queuekit.settings import ScheduleSettings
from queuekit.tracing import traced_jobs

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from queuekit.queues import QueueRegistry

log = logging.getLogger("queuekit.schedules")

#: A date argument: epoch milliseconds or an aware datetime.
DateArg = int | dt.datetime | None


@dataclass(frozen=True)
class JobSchedulerInfo:
    """A job scheduler as the store holds it.

    ``every`` is in ms; ``pattern`` a cron expression (five fields, or six with seconds
    first) evaluated in ``tz`` (UTC when None). ``iteration_count`` is the number of jobs
    it has produced (BullMQ's ``ic``); ``next_run_at`` the epoch ms of its pending run
    (None once it stopped: limit reached or end date passed); ``start_date`` and
    ``end_date`` are epoch ms; ``data`` is the template payload (the queue's model when
    it validates, else the stored mapping, e.g. a scheduler written by another producer).
    """

    id: str
    queue: str
    name: str
    every: int | None
    pattern: str | None
    tz: str | None
    limit: int | None
    iteration_count: int
    next_run_at: int | None
    start_date: int | None
    end_date: int | None
    data: Any

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (``data`` as the stored mapping)."""
        data = self.data
        if hasattr(data, "to_wire"):
            data = data.to_wire()
        return {"id": self.id, "queue": self.queue, "name": self.name, "every": self.every,
                "pattern": self.pattern, "tz": self.tz, "limit": self.limit,
                "iteration_count": self.iteration_count, "next_run_at": self.next_run_at,
                "start_date": self.start_date, "end_date": self.end_date, "data": data}


@dataclass(frozen=True)
class SchedulerSpec:
    """A validated scheduler, ready for a backend to write."""

    queue: str
    id: str
    every: int | None
    pattern: str | None
    tz: str | None
    limit: int | None
    start_date: int | None
    end_date: int | None
    immediately: bool
    job: PreparedJob

    @property
    def name(self) -> str:
        """The name of the jobs it produces."""
        return self.job.name


def to_ms(value: DateArg) -> int | None:
    """Epoch milliseconds of a date argument (a naive datetime is taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp() * 1000)
    return int(value)


def next_cron_run(pattern: str, tz: str | None, after_ms: int,
                  start_date: int | None = None) -> int:
    """The first time ``pattern`` fires strictly after ``max(after_ms, start_date)``,
    evaluated on the wall clock of ``tz`` (UTC when None), in epoch ms.

    croniter steps on the naive wall time and the result is placed in the zone here:
    croniter 2.0 given a ``zoneinfo`` datetime is an hour off on the day a DST change
    ends (``0 3 * * *`` on 31 October 2027 in Berlin gave 04:00). A wall time that does
    not exist (spring gap) is taken with the offset before the change, as ``zoneinfo``
    does (02:30 becomes 03:30).
    """
    base = max(after_ms, start_date or 0)
    zone = ZoneInfo(tz) if tz else dt.UTC
    wall = dt.datetime.fromtimestamp(base / 1000, tz=zone).replace(tzinfo=None)
    itr = croniter(pattern, wall, second_at_beginning=True)
    while True:
        found = itr.get_next(dt.datetime).replace(tzinfo=zone)
        millis = int(found.timestamp() * 1000)
        if millis > base:  # a repeated wall hour (autumn) can map to before the base
            return millis


def scheduler_data(registry: QueueRegistry, queue: str, data: Any) -> Any:
    """The template payload as the queue's model, or ``data`` itself when it does not fit."""
    try:
        return registry.model_for(queue).model_validate(data)
    except Exception:
        return data


class SchedulesMixin(abc.ABC):
    """The job-scheduler methods of :class:`~queuekit.service.QueueService`."""

    if TYPE_CHECKING:
        registry: QueueRegistry
        _tracer: Tracer | None

        def prepare_job(self, queue: str, name: str, data: JobData,
                        options: OptionsArg = None) -> PreparedJob: ...

        def _ensure_open(self) -> None: ...

        def _now_ms(self) -> int: ...

    def prepare_job_scheduler(
        self, queue: str, scheduler_id: str, *, every: int | None = None,
        pattern: str | None = None, tz: str | None = None, limit: int | None = None,
        start_date: DateArg = None, end_date: DateArg = None, immediately: bool = False,
        name: str | None = None, data: JobData, options: OptionsArg = None,
    ) -> SchedulerSpec:
        """Validate a scheduler without writing it (every check of
        :meth:`upsert_job_scheduler`); raises :class:`PayloadValidationError`."""
        queue = str(queue)
        errors: list[FieldError] = []
        if not isinstance(scheduler_id, str) or not scheduler_id.strip():
            errors.append(FieldError("scheduler_id", "must be a non-empty string"))
        if (every is None) == (pattern is None):
            errors.append(FieldError("every", "give exactly one of every (ms) or pattern (cron)"))
        if every is not None and (isinstance(every, bool) or not isinstance(every, int)
                                  or every < 1):
            errors.append(FieldError("every", f"must be a whole number of ms >= 1, got {every!r}"))
        if pattern is not None and (not isinstance(pattern, str) or not croniter.is_valid(
                pattern, second_at_beginning=True)):
            errors.append(FieldError("pattern", f"{pattern!r} is not a valid cron expression "
                                     "(5 fields, or 6 with seconds first)"))
        if tz is not None:
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError, TypeError):
                errors.append(FieldError("tz", f"unknown time zone {tz!r} (an IANA name such "
                                         "as 'Europe/Berlin')"))
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            errors.append(FieldError("limit", f"must be >= 1 (or None for no limit), got "
                                     f"{limit!r}"))
        start_ms, end_ms = to_ms(start_date), to_ms(end_date)
        if end_ms is not None and end_ms <= self._now_ms():
            errors.append(FieldError("end_date", "is in the past: the scheduler would never "
                                     "run"))
        if start_ms is not None and end_ms is not None and end_ms <= start_ms:
            errors.append(FieldError("end_date", "must be after start_date"))
        if (pattern is not None and end_ms is not None and not immediately
                and not any(e.field in ("pattern", "tz", "end_date") for e in errors)
                and next_cron_run(pattern, tz, self._now_ms(), start_ms) > end_ms):
            errors.append(FieldError("end_date", "is before the pattern's first run: the "
                                     "scheduler would never run"))
        if immediately and start_ms is not None:
            errors.append(FieldError("immediately", "cannot be combined with start_date"))
        if options is not None:
            fixed = {"delay", "job_id", "jobId"} & set(
                options.model_fields_set if hasattr(options, "model_fields_set")
                else options)
            if fixed:
                errors.append(FieldError(f"options.{sorted(fixed)[0]}", "is set by the "
                                         "scheduler for each run; leave it out"))
        try:
            job = self.prepare_job(queue, name if name is not None else str(scheduler_id),
                                   data, options)
        except PayloadValidationError as exc:
            if not errors:
                raise
            errors.extend(exc.errors)
        if errors:
            raise PayloadValidationError(f"job scheduler {scheduler_id!r} of queue {queue!r}",
                                         errors)
        return SchedulerSpec(queue=queue, id=scheduler_id, every=every, pattern=pattern, tz=tz,
                             limit=limit, start_date=start_ms, end_date=end_ms,
                             immediately=bool(immediately), job=job)

    async def upsert_job_scheduler(
        self, queue: str, scheduler_id: str, *, every: int | None = None,
        pattern: str | None = None, tz: str | None = None, limit: int | None = None,
        start_date: DateArg = None, end_date: DateArg = None, immediately: bool = False,
        name: str | None = None, data: JobData, options: OptionsArg = None,
    ) -> JobSchedulerInfo:
        """Create or replace the scheduler ``scheduler_id`` of ``queue``.

        Exactly one of ``every`` (ms; the first run is now) or ``pattern`` (cron, in
        ``tz``); ``limit`` caps the runs, ``start_date`` / ``end_date`` (epoch ms or
        datetime) bound them; ``immediately`` runs a pattern scheduler once now. ``name``
        (default: the id), ``data`` and ``options`` are the template of every run,
        validated and secret-checked as in ``add_job``. Idempotent: the same id again
        leaves one scheduler with one pending run and the new spec. Nothing is written
        when validation fails.
        """
        self._ensure_open()
        spec = self.prepare_job_scheduler(
            queue, scheduler_id, every=every, pattern=pattern, tz=tz, limit=limit,
            start_date=start_date, end_date=end_date, immediately=immediately, name=name,
            data=data, options=options)
        with traced_jobs(self._tracer, "add", spec.queue, f"{spec.queue}.{spec.name}", {
                "bullmq.job.name": spec.name, "bullmq.job.scheduler.id": spec.id,
        }) as metadata:
            if metadata is not None:  # every run carries the upsert's trace context
                spec = dataclasses.replace(spec, job=dataclasses.replace(
                    spec.job, trace_metadata=metadata))
            info = await self._upsert_job_scheduler(spec)
        log.info("job scheduler %s of %s upserted (%s), next run at %s", spec.id, spec.queue,
                 f"every {spec.every} ms" if spec.every else f"{spec.pattern!r} {spec.tz or ''}",
                 info.next_run_at, extra={"queue": spec.queue, "scheduler_id": spec.id})
        return info

    async def get_job_schedulers(self, queue: str) -> list[JobSchedulerInfo]:
        """Every scheduler of ``queue`` (as BullMQ lists them: latest next run first)."""
        self._ensure_open()
        return await self._get_job_schedulers(str(queue))

    async def get_job_scheduler(self, queue: str, scheduler_id: str) -> JobSchedulerInfo | None:
        """The scheduler ``scheduler_id`` of ``queue``, or None."""
        self._ensure_open()
        return await self._get_job_scheduler(str(queue), str(scheduler_id))

    async def remove_job_scheduler(self, queue: str, scheduler_id: str) -> bool:
        """Remove the scheduler and its pending (delayed) run; False when there was none."""
        self._ensure_open()
        removed = await self._remove_job_scheduler(str(queue), str(scheduler_id))
        log.info("job scheduler %s of %s %s", scheduler_id, queue,
                 "removed" if removed else "not found",
                 extra={"queue": str(queue), "scheduler_id": str(scheduler_id)})
        return removed

    async def sync_declared_schedules(self, declared: Mapping[str, ScheduleSettings]
                                      ) -> list[JobSchedulerInfo]:
        """Make the store's declared schedulers those of ``declared`` (the configuration's
        ``schedules:`` and the plugins'): every entry is validated first (a
        :class:`ConfigurationError` naming ``schedules.<id>``), then upserted, which is
        idempotent across processes (one scheduler, one pending run). A scheduler that an
        earlier start declared and ``declared`` no longer has is removed, with its pending
        run; schedulers created in code (or by Node) are never touched.
        """
        self._ensure_open()
        specs = []
        for scheduler_id, entry in declared.items():
            try:
                specs.append(self.prepare_job_scheduler(entry.queue, scheduler_id,
                                                        **entry.upsert_arguments()))
            except PayloadValidationError as exc:
                raise ConfigurationError(f"schedules.{scheduler_id}: {exc}") from exc
        infos = []
        for spec in specs:
            info = await self._upsert_job_scheduler(spec)
            log.info("declared job scheduler %s of %s upserted, next run at %s", spec.id,
                     spec.queue, info.next_run_at,
                     extra={"queue": spec.queue, "scheduler_id": spec.id})
            infos.append(info)
        current = {(spec.queue, spec.id) for spec in specs}
        stale = await self._declared_schedulers() - current
        for queue, scheduler_id in sorted(stale):
            await self._remove_job_scheduler(queue, scheduler_id)
            log.info("job scheduler %s of %s removed: no longer declared", scheduler_id, queue,
                     extra={"queue": queue, "scheduler_id": scheduler_id})
        await self._record_declared(current, stale)
        return infos

    # -- backend hooks -----------------------------------------------------------------

    @abc.abstractmethod
    async def _upsert_job_scheduler(self, spec: SchedulerSpec) -> JobSchedulerInfo:
        """Write the scheduler and its next run; return it as stored."""

    @abc.abstractmethod
    async def _get_job_schedulers(self, queue: str) -> list[JobSchedulerInfo]:
        """Every scheduler of ``queue``."""

    @abc.abstractmethod
    async def _get_job_scheduler(self, queue: str, scheduler_id: str
                                 ) -> JobSchedulerInfo | None:
        """One scheduler, or None."""

    @abc.abstractmethod
    async def _declared_schedulers(self) -> set[tuple[str, str]]:
        """(queue, id) of the schedulers earlier starts declared."""

    @abc.abstractmethod
    async def _record_declared(self, current: set[tuple[str, str]],
                               stale: set[tuple[str, str]]) -> None:
        """Remember ``current`` as declared, forget ``stale``."""

    @abc.abstractmethod
    async def _remove_job_scheduler(self, queue: str, scheduler_id: str) -> bool:
        """Delete the scheduler and its delayed run; whether it existed."""
