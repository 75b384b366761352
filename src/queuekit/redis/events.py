"""BullMQ's event stream of a queue as ``QueueEvent`` s (``QueueService.events``)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import bullmq

from queuekit.events import EventStream, EventType, QueueEvent
from queuekit.jobs import result_from_wire
from queuekit.redis.keys import events_key, job_key
from queuekit.redis.wire import max_attempts

if TYPE_CHECKING:
    from queuekit.redis.service import RedisQueueService

#: Events of BullMQ's stream that we pass on as they are.
_PLAIN_EVENTS = {"active": EventType.ACTIVE, "stalled": EventType.STALLED}
#: How long one blocking XREAD waits, in ms: bounds how long closing a stream takes.
_EVENTS_BLOCK_MS = 1000


class RedisEventStream(EventStream):
    """BullMQ's event stream of a queue (``QueueEvents`` underneath), as ``QueueEvent``s.

    bullmq's listeners are synchronous: they only queue the raw entries, which
    ``__anext__`` translates (reading the job where the stream alone does not say, e.g.
    which attempt failed). A failed attempt that will be retried appears in BullMQ's
    stream as ``delayed`` (backoff) or ``waiting`` with ``prev=active``; it becomes a
    ``failed`` event with ``will_retry=True`` and a ``retrying`` event here, so it looks
    the same whichever worker (Python or Node) ran the job.
    """

    def __init__(self, service: RedisQueueService, queue: str) -> None:
        super().__init__(queue)
        self._service = service
        self._raw: asyncio.Queue[tuple[str, dict[str, Any]] | BaseException] = asyncio.Queue()
        self._client: Any = None
        self._bull: Any = None
        self._stalled: set[str] = set()

    async def _subscribe(self) -> None:
        connection = self._service.connection
        self._client = connection.worker_client()
        key = events_key(self._service.queue_prefix(self.queue), self.queue)
        last = await self._service.breaker.call(lambda: self._client.xrevrange(key, count=1))
        self._bull = bullmq.QueueEvents(self.queue, {
            "connection": self._client,
            "prefix": self._service.queue_prefix(self.queue),
            "blockingTimeout": _EVENTS_BLOCK_MS,
            "lastEventId": last[0][0] if last else "0-0",
            "autorun": False,
            "skipVersionCheck": True,
        })
        for name in ("waiting", "delayed", "active", "progress", "completed", "failed",
                     "stalled", "deduplicated"):
            self._bull.on(name, self._listener(name))
        self._bull.on("error", lambda err: self._raw.put_nowait(err))
        self._task = asyncio.ensure_future(self._bull.run())

    def _listener(self, name: str) -> Any:
        def listen(args: dict[str, Any], entry_id: str) -> None:
            self._raw.put_nowait((name, dict(args)))
        return listen

    async def __anext__(self) -> QueueEvent:
        while True:
            if not self._pending.empty() or self._closed:
                return await super().__anext__()
            if not self._opened:
                await self.open()
            getter = asyncio.ensure_future(self._raw.get())
            pending = asyncio.ensure_future(self._pending.get())
            done, _ = await asyncio.wait({getter, pending}, return_when=asyncio.FIRST_COMPLETED)
            if pending in done:
                getter.cancel()
                self._pending.put_nowait(pending.result())
                continue
            pending.cancel()
            raw = getter.result()
            if isinstance(raw, BaseException):
                self._fail(raw)
                continue
            for event in await self._translate(*raw):
                self._put(event)

    async def _job_fields(self, job_id: str) -> dict[str, Any]:
        key = job_key(self._service.queue_prefix(self.queue), self.queue, job_id)
        atm, reason, attempts = await self._service.connection.client.hmget(
            key, ["atm", "failedReason", "opts"])
        allowed = 1
        if attempts:
            try:
                allowed = max_attempts(json.loads(attempts))
            except (ValueError, AttributeError):
                allowed = 1
        return {"atm": int(atm or 0), "reason": reason, "attempts": allowed}

    async def _translate(self, name: str, args: dict[str, Any]) -> list[QueueEvent]:
        job_id = str(args.get("jobId", ""))
        queue = self.queue
        if name in _PLAIN_EVENTS:
            if name == "stalled":
                self._stalled.add(job_id)
            return [QueueEvent(_PLAIN_EVENTS[name], queue, job_id)]
        if name == "progress":
            return [QueueEvent(EventType.PROGRESS, queue, job_id, args.get("data"))]
        if name == "deduplicated":
            return [QueueEvent(EventType.DEDUPLICATED, queue, job_id, {
                "deduplication_id": args.get("deduplicationId"),
                "deduplicated_job_id": args.get("deduplicatedJobId")})]
        if name == "completed":
            return [QueueEvent(EventType.COMPLETED, queue, job_id,
                               result_from_wire(args.get("returnvalue")))]
        if name == "failed":
            fields = await self._job_fields(job_id)
            attempt = fields["atm"] or None
            return [QueueEvent(EventType.FAILED, queue, job_id, args.get("failedReason"),
                               attempt, False)]
        retry = (name == "waiting" and args.get("prev") == "active") or (
            name == "delayed" and "prev" not in args)
        if retry and job_id in self._stalled:
            self._stalled.discard(job_id)
            return []
        if retry:
            fields = await self._job_fields(job_id)
            if fields["atm"] > 0 and fields["reason"]:
                due = int(args.get("delay", 0) or 0)
                backoff = max(due - int(time.time() * 1000), 0) if name == "delayed" else 0
                return [
                    QueueEvent(EventType.FAILED, queue, job_id, fields["reason"],
                               fields["atm"], True),
                    QueueEvent(EventType.RETRYING, queue, job_id, backoff, fields["atm"] + 1),
                ]
        if name == "delayed":
            due = int(args.get("delay", 0) or 0)
            return [QueueEvent(EventType.DELAYED, queue, job_id,
                               max(due - int(time.time() * 1000), 0))]
        return [QueueEvent(EventType.WAITING, queue, job_id)]

    async def _unsubscribe(self) -> None:
        if self._bull is not None:
            await self._bull.close()
        if self._client is not None:
            await self._service.connection.release_worker_client(self._client)
