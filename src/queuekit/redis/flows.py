"""Flows on Redis, in BullMQ's format: the write of a tree and its read-back.

A flow is written as Node's ``FlowProducer.add`` writes it: one MULTI/EXEC with, depth
first, ``addParentJob`` for each node that has children and ``addJob`` (standard, delayed
or prioritized) for each leaf, every child carrying ``parent {id, queue}`` so the scripts
record it in ``<parent key>:dependencies``. The jobs are bullmq ``Job`` objects, built
from queuekit's validated options, so the stored hash (``parentKey``, ``parent`` JSON with
the failure flags, encoded opts) is byte for byte bullmq's. Completing and failing
children is BullMQ's ``moveToFinished`` (the engines call it as for any job).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bullmq.job import Job

from queuekit.flows import FlowEntry, RawFlow
from queuekit.redis.keys import (
    FLOW_CHILDREN_FAILED,
    FLOW_CHILDREN_PENDING,
    FLOW_CHILDREN_PROCESSED,
    FLOW_CHILDREN_UNSUCCESSFUL,
    job_key,
    queue_key,
)
from queuekit.redis.wire import bullmq_options, with_trace_metadata

if TYPE_CHECKING:
    from queuekit.redis.service import RedisQueueService


class RedisFlows:
    """The flow side of one :class:`RedisQueueService`."""

    def __init__(self, service: RedisQueueService) -> None:
        self._service = service

    def _bull_job(self, entry: FlowEntry) -> Any:
        service = self._service
        opts = dict(with_trace_metadata(bullmq_options(entry.job.options),
                                        entry.job.trace_metadata))
        opts["jobId"] = entry.job_id
        if entry.parent is not None:
            parent_queue, parent_id = entry.parent
            parent_prefix = service.queue_prefix(parent_queue)
            opts["parent"] = {"id": parent_id,
                              "queue": queue_key(parent_prefix, parent_queue)[:-1]}
        return Job(queue=service.get_queue(entry.job.queue), name=entry.job.name,
                   data=entry.job.wire, opts=opts, job_id=entry.job_id)

    async def add(self, entries: Sequence[FlowEntry]) -> None:
        """One MULTI/EXEC for the whole tree (redis-py loads the scripts before it)."""
        service = self._service
        service.check_one_slot({entry.job.queue for entry in entries})
        jobs = [(entry, self._bull_job(entry)) for entry in entries]
        client = service.connection.client

        async def write() -> list[Any]:
            async with client.pipeline(transaction=True) as pipe:
                for entry, job in jobs:
                    scripts = service.get_queue(entry.job.queue).scripts
                    if entry.has_children:
                        await scripts.addParentJob(job, pipe)
                    else:
                        await scripts.addJob(job, pipe)
                return list(await pipe.execute())

        results = await service.breaker.call(write)
        for (entry, _job), result in zip(jobs, results, strict=True):
            if isinstance(result, int) and result < 0:
                scripts = service.get_queue(entry.job.queue).scripts
                raise scripts.finishedErrors({"code": result, "command": "addFlow",
                                              "jobId": entry.job_id})

    async def children_values(self, queue: str, job_id: str) -> dict[str, Any]:
        """BullMQ's ``getChildrenValues``: ``<job key>:processed``, values JSON-decoded."""
        service = self._service
        key = job_key(service.queue_prefix(queue), queue, job_id) + FLOW_CHILDREN_PROCESSED
        raw: dict[Any, Any] = await service.breaker.call(
            lambda: service.connection.client.hgetall(key))
        return {str(child): json.loads(value) if value else None for child, value in raw.items()}

    async def raw_flow(self, queue: str, job_id: str) -> RawFlow | None:
        """The tree under one job: its children are every key in its dependency records."""
        service = self._service
        raw = await service.read_raw_job(queue, job_id)
        if raw is None:
            return None
        flow = RawFlow(queue, raw)
        base = job_key(service.queue_prefix(queue), queue, job_id)
        client = service.connection.client

        async def read() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.smembers(base + FLOW_CHILDREN_PENDING)
                pipe.hkeys(base + FLOW_CHILDREN_PROCESSED)
                pipe.hkeys(base + FLOW_CHILDREN_FAILED)
                pipe.zrange(base + FLOW_CHILDREN_UNSUCCESSFUL, 0, -1)
                return list(await pipe.execute())

        groups = await service.breaker.call(read)
        keys = dict.fromkeys(key for group in groups for key in sorted(group))
        for key in keys:
            ref = service.parse_job_key(str(key))
            child = None if ref is None else await self.raw_flow(*ref)
            if child is not None:
                flow.children.append(child)
        flow.children.sort(key=lambda c: (c.job.timestamp, c.queue, c.job.id))
        return flow
