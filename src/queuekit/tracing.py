"""OpenTelemetry spans for adds and attempts, interoperable with Node's ``bullmq-otel``.

Install ``queuekit[otel]`` (opentelemetry-api) and configure an SDK tracer provider in
your application; queuekit then creates:

- a PRODUCER span per add, ``add <queue>.<job name>`` (``add_job``), or ``addBulk
  <queue>`` (``add_jobs``), whose W3C context travels with the job in BullMQ's own
  telemetry field (``tm`` in the job options, a JSON string of the propagation carrier,
  exactly as ``bullmq-otel`` writes it);
- a CONSUMER span per attempt, ``process <queue>``, a child of the context the job
  carries, whoever added it (a Node producer with ``bullmq-otel`` or queuekit).

Attributes: BullMQ's (``bullmq.queue.name``, ``bullmq.job.id`` ...) and the OpenTelemetry
messaging conventions (``messaging.system`` = ``bullmq``, ``messaging.destination.name``,
``messaging.operation.type``, ``messaging.message.id``). A failed attempt records the
exception and sets the span's status to ERROR.

Without opentelemetry installed, or with no tracer provider configured (the API's
default proxy), :func:`tracer` returns None and no span, carrier or attribute is built:
services and workers check once, when they are created.

Flows and job schedulers (and any other producer) use :func:`producer_span`: it yields
the ``tm`` metadata to store with each job it writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.metadata
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from queuekit.records import PreparedJob, RawJob

log = logging.getLogger("queuekit.tracing")

#: The instrumentation scope of every queuekit span.
TRACER_NAME = "queuekit"
MESSAGING_SYSTEM = "bullmq"

_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()


def tracer() -> Tracer | None:
    """queuekit's tracer, or None when tracing is off (no opentelemetry, or no provider
    configured): the one check a service or a worker makes, when it is created."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer(TRACER_NAME, _version())


@functools.cache
def _version() -> str | None:
    try:
        return importlib.metadata.version("queuekit")
    except importlib.metadata.PackageNotFoundError:
        return None


def _attributes(queue: str, operation: str, operation_type: str,
                **extra: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "bullmq.queue.name": queue,
        "bullmq.queue.operation": operation,
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.type": operation_type,
        "messaging.operation.name": operation,
    }
    attributes.update({k: v for k, v in extra.items() if v is not None})
    return attributes


def current_metadata() -> str:
    """The current context as BullMQ's ``tm`` value: ``JSON.stringify(carrier)``, as
    ``bullmq-otel``'s ``getMetadata`` writes it."""
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return json.dumps(carrier, separators=(",", ":"))


def _parent_context(metadata: str | None, queue: str, job_id: str) -> Any:
    if not metadata:
        return None
    try:
        carrier = json.loads(metadata)
    except ValueError:
        carrier = None
    if not isinstance(carrier, Mapping):
        log.warning("job %s on %s carries malformed trace metadata; starting a new trace",
                    job_id, queue, extra={"queue": queue, "job_id": job_id})
        return None
    from opentelemetry import propagate

    return propagate.extract({str(k): str(v) for k, v in carrier.items()})


@contextlib.contextmanager
def producer_span(tracer: Tracer, operation: str, queue: str, target: str | None = None,
                  attributes: Mapping[str, Any] | None = None,
                  ) -> Iterator[tuple[Span, str]]:
    """A PRODUCER span ``<operation> <target or queue>``, current while the block runs;
    yields ``(span, metadata)`` where ``metadata`` is the ``tm`` value to store with
    every job written inside it. The hook for flows (``addFlow``) and schedulers."""
    from opentelemetry.trace import SpanKind

    name = f"{operation} {target or queue}"
    with tracer.start_as_current_span(
        name, kind=SpanKind.PRODUCER,
        attributes=_attributes(queue, operation, "send", **(attributes or {})),
    ) as span:
        yield span, current_metadata()


async def traced_add(tracer: Tracer, job: PreparedJob,
                     add: Callable[[PreparedJob], Awaitable[str]]) -> str:
    """``add(job)`` inside an ``add <queue>.<name>`` span; the job carries its context."""
    with producer_span(tracer, "add", job.queue, f"{job.queue}.{job.name}",
                       {"bullmq.job.name": job.name}) as (span, metadata):
        job_id = await add(dataclasses.replace(job, trace_metadata=metadata))
        span.set_attribute("bullmq.job.id", job_id)
        span.set_attribute("messaging.message.id", job_id)
        return job_id


async def traced_add_bulk(tracer: Tracer, jobs: Sequence[PreparedJob],
                          add: Callable[[Sequence[PreparedJob]], Awaitable[list[str]]],
                          ) -> list[str]:
    """``add(jobs)`` inside one ``addBulk <queue>`` span (as BullMQ's ``addBulk``); every
    job carries that span's context."""
    names = sorted({job.name for job in jobs})
    with producer_span(tracer, "addBulk", jobs[0].queue, attributes={
        "bullmq.job.bulk.names": names, "bullmq.job.bulk.count": len(jobs),
        "messaging.batch.message_count": len(jobs),
    }) as (_, metadata):
        return await add([dataclasses.replace(job, trace_metadata=metadata) for job in jobs])


def traced_jobs(tracer: Tracer | None, operation: str, queue: str, target: str | None,
                attributes: Mapping[str, Any]) -> contextlib.AbstractContextManager[
        str | None]:
    """A producer span for writing several jobs at once (a flow, a scheduler's template):
    yields the trace metadata every job written inside should carry (None: no tracing)."""
    if tracer is None:
        return contextlib.nullcontext(None)
    return _metadata_only(tracer, operation, queue, target, attributes)


@contextlib.contextmanager
def _metadata_only(tracer: Tracer, operation: str, queue: str, target: str | None,
                   attributes: Mapping[str, Any]) -> Iterator[str | None]:
    with producer_span(tracer, operation, queue, target, attributes) as (_, metadata):
        yield metadata


def consume(tracer: Tracer | None, queue: str, raw: RawJob) -> contextlib.AbstractContextManager[
        Any]:
    """The CONSUMER span of one attempt (``process <queue>``), or a shared no-op context
    when tracing is off."""
    if tracer is None:
        return _NO_SPAN
    return _consumer_span(tracer, queue, raw)


@contextlib.contextmanager
def _consumer_span(tracer: Tracer, queue: str, raw: RawJob) -> Iterator[Span]:
    from opentelemetry.trace import SpanKind, Status, StatusCode

    attempt = raw.attempts_made + 1
    with tracer.start_as_current_span(
        f"process {queue}", context=_parent_context(raw.trace_metadata, queue, raw.id),
        kind=SpanKind.CONSUMER, record_exception=False, set_status_on_exception=False,
        attributes=_attributes(queue, "process", "process", **{
            "bullmq.job.id": raw.id, "bullmq.job.name": raw.name,
            "bullmq.job.attempts.made": raw.attempts_made,
            "queuekit.job.attempt": attempt, "queuekit.job.max_attempts": raw.max_attempts,
            "messaging.message.id": raw.id,
        }),
    ) as span:
        try:
            yield span
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            span.set_attributes({"queuekit.job.outcome": "failed",
                                 "bullmq.job.failed.reason": str(exc),
                                 "error.type": type(exc).__qualname__})
            raise
        except BaseException:  # cancelled by a forced close: the job runs again
            span.set_attribute("queuekit.job.outcome", "interrupted")
            raise
        span.set_attribute("queuekit.job.outcome", "completed")
