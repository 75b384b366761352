"""``cancel_job`` on Redis, across processes.

A job that waits (``wait``, ``paused``, ``prioritized``, ``delayed``) is removed with
BullMQ's ``removeJob`` in a MULTI under ``WATCH`` of its hash: every way out of those
states (``moveToActive``) writes the hash, so a job that started meanwhile is never
removed, and a finished one is never touched. A running job gets a request: its job id
is published on ``<prefix>:qk:cancel:<queue>``; every queuekit worker of the queue, in
any process, subscribes to that channel before it fetches its first job and interrupts
the attempt if it runs it (or remembers the id for a while, in case the job is just
starting). Pub/sub is not stored: a worker that is disconnected from Redis at that
moment misses the request, and a Node worker never acts on it (best effort).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from queuekit.redis.breaker import UNAVAILABLE_ERRORS
from queuekit.redis.cluster import FAILOVER_ERRORS, FailoverCluster, through_failover
from queuekit.redis.keys import CANCEL_REMOVABLE, cancel_channel, job_key, queue_key

if TYPE_CHECKING:
    from queuekit.redis.service import RedisQueueService

log = logging.getLogger("queuekit.redis")

#: Attempts of the WATCH/MULTI removal before giving up (the hash changed each time).
_WATCH_ATTEMPTS = 20


async def cancel_job(service: RedisQueueService, queue: str, job_id: str) -> bool:
    """Remove ``job_id`` if it waits; else ask its worker to stop it. See the module."""
    prefix, client = service.queue_prefix(queue), service.connection.client
    key = job_key(prefix, queue, job_id)
    scripts = service.get_queue(queue).scripts
    remove = scripts.commands["removeJob"]

    async def attempt() -> bool | None:
        """True/False: done; None: it is active, publish a request."""
        for _ in range(_WATCH_ATTEMPTS):
            async with client.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                if not await pipe.exists(key):
                    return False
                waiting = False
                for state in CANCEL_REMOVABLE:
                    state_key = queue_key(prefix, queue, state)
                    found = (await pipe.lpos(state_key, job_id) if state in ("wait", "paused")
                             else await pipe.zscore(state_key, job_id))
                    if found is not None:
                        waiting = True
                        break
                if not waiting:
                    active = await pipe.lpos(queue_key(prefix, queue, "active"), job_id)
                    return None if active is not None else False
                pipe.multi()  # type: ignore[no-untyped-call]
                await remove(keys=[key, queue_key(prefix, queue, "repeat")],
                             args=[job_id, 0, queue_key(prefix, queue)], client=pipe)
                try:
                    (removed,) = await pipe.execute()
                except WatchError:
                    continue
                return int(removed) == 1
        return False

    run: Callable[[], Awaitable[bool | None]] = attempt
    if isinstance(client, FailoverCluster):
        # A WATCH pipeline meets a dead master as it is (redis-py resets its slot map on a
        # plain command's connection error, not on this): reset it, and wait out the
        # failover as plain commands do.
        async def fresh_attempt() -> bool | None:
            try:
                return await attempt()
            except FAILOVER_ERRORS:
                await client.aclose()
                raise

        def run() -> Awaitable[bool | None]:
            return through_failover(fresh_attempt, client.failover_wait)

    done = await service.breaker.call(run)
    if done is not None:
        return done
    receivers = await service.breaker.call(
        lambda: client.publish(cancel_channel(prefix, queue), job_id))
    return int(receivers) > 0


class CancelListener:
    """One worker's subscription to its queue's cancel channel."""

    def __init__(self, client: Redis, prefix: str, queue: str,
                 on_request: Callable[[str], object], retry_delay: float) -> None:
        self._client = client
        self._channel = cancel_channel(prefix, queue)
        self._on_request = on_request
        self._retry_delay = retry_delay
        self._extra = {"queue": queue}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe (before the worker's first fetch), then listen in the background."""
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self._channel)
        self._task = asyncio.ensure_future(self._listen())

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=None)
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE_ERRORS as exc:
                log.warning("cancel requests on %s: Redis unavailable (%s); retrying",
                            self._channel, exc, extra=self._extra)
                await asyncio.sleep(self._retry_delay)
                await self._resubscribe()
                continue
            except Exception as exc:
                log.error("cancel requests on %s: %s", self._channel, exc, extra=self._extra)
                await asyncio.sleep(self._retry_delay)
                await self._resubscribe()
                continue
            if message and message.get("type") == "message":
                data = message.get("data")
                job_id = data.decode() if isinstance(data, bytes) else str(data)
                self._on_request(job_id)

    async def _resubscribe(self) -> None:
        # A new subscription, not redis-py's reconnect of the old one: on Redis Cluster
        # that one is tied to a node that may be gone for good (a failed-over master).
        old, self._pubsub = self._pubsub, self._client.pubsub(ignore_subscribe_messages=True)
        with contextlib.suppress(Exception):
            await old.aclose()
        with contextlib.suppress(Exception):  # still away: the next read fails, we retry
            await self._pubsub.subscribe(self._channel)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
