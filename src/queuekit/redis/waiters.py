"""``wait_for_job``'s wake-ups on Redis: one reader of BullMQ's event stream per queue.

Every process that waits for jobs of a queue runs ONE blocking ``XREAD`` loop on that
queue's events stream (a dedicated connection without socket timeout, made by
``QueueConnection.worker_client``), however many callers wait: the reader hands each
``completed`` / ``failed`` / ``removed`` entry to the callers waiting for that job id.
Node BullMQ workers write the same stream, so their jobs wake waiters the same way.

The reader starts on the first wait (after learning the stream's last entry id, so an
event that follows the subscription is never skipped), goes idle once nobody has waited
for one block interval (a caller that waits for one job after another keeps one running
reader instead of restarting it per job), and stops when the service closes. Connection
errors are retried with a growing pause; each one wakes every waiter so it re-reads its
job (entries may have been missed, e.g. while Redis restarted). ``QueueService.wait_for_job``
re-reads every second anyway, so a missed event costs latency, never a result.

While the reader reads on without a gap, it remembers the jobs this process added since
it learned its position (ids Redis chose, see :meth:`JobWaiters.before_add`) and the jobs
it read a final event of. A wait for such an added job needs no first look at the job:
every event of it is still to come or already remembered (``JobWatch.covers_add``). One
round trip less per add-then-wait; any gap (an error, the reader stopping) forgets both.

While jobs are waited for, each XREAD carries their final reads behind it
(:mod:`queuekit.redis.final_reads`): a waiter woken by its job's ``completed`` or
``failed`` entry gets the job as ``get_job`` would read it then (``JobWatch.take_read``),
so the wait ends without a round trip after the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from itertools import islice
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from queuekit.jobs import JobInfo
from queuekit.redis.final_reads import WATCHED, FinalReads
from queuekit.redis.link import DedicatedLink
from queuekit.waiting import JobWatch

_Added = TypeVar("_Added", str, list[str])

log = logging.getLogger("queuekit.redis.waiters")

#: BullMQ events after which a job may be finished (or gone).
FINAL_EVENTS = frozenset({"completed", "failed", "removed"})
#: How long one XREAD blocks (ms); the reader notices that nobody waits after this long.
BLOCK_MS = 2000
#: Entries per XREAD: a busy queue writes several events per job.
READ_COUNT = 1000
#: Seconds a new waiter waits for the reader to learn the stream's position; past this
#: it relies on the fallback re-read instead of blocking on a slow Redis.
READY_TIMEOUT = 1.0
#: Pause after a connection error: starts small, doubles up to the cap (seconds).
RETRY_START, RETRY_CAP = 0.05, 1.0
#: Job ids a reader remembers, of each kind (added here, finished): the oldest go first.
REMEMBER = 10_000


class _Watch(JobWatch):
    def __init__(self, reader: QueueEventReader, job_id: str) -> None:
        self.job_id = job_id
        self._reader = reader
        self._event = asyncio.Event()
        self._read: JobInfo | None = None

    def wake(self, read: JobInfo | None = None) -> None:
        self._read = read  # the latest wake-up's: an older read may be stale
        self._event.set()

    def take_read(self) -> JobInfo | None:
        read, self._read = self._read, None
        return read

    async def changed(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._event.wait()
        woke = self._event.is_set()
        self._event.clear()
        return woke

    async def aclose(self) -> None:
        self._reader.forget(self)


class QueueEventReader:
    """The one reader of one queue's events stream in this process."""

    def __init__(self, make_client: Callable[[], Redis], key: str, queue: str,
                 reads: FinalReads | None = None) -> None:
        self.key = key
        self.queue = queue
        self._reads = reads  # the final reads sent with each XREAD while jobs are waited
        self._make_client = make_client
        self._client: Redis | None = None
        self._watches: dict[str, set[_Watch]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._cursor: str | None = None
        self._closed = False
        self._last_watch = 0.0  # monotonic time the last watch ended
        self._link: DedicatedLink | None = None  # the connection XREAD blocks on
        # Reading on without a gap since the position was learned; the epoch counts gaps.
        self._live = False
        self._epoch = 0
        self._added: dict[str, None] = {}  # added by this process while live
        self._finished: dict[str, None] = {}  # a final event read while live

    @property
    def client(self) -> Redis | None:
        """The dedicated connection's client, once the reader has run."""
        return self._client

    @property
    def running(self) -> bool:
        """True while the XREAD loop runs."""
        return self._task is not None

    async def watch(self, job_id: str) -> JobWatch:
        """Subscribe to ``job_id``; returns once the reader will see what follows."""
        watch = _Watch(self, job_id)
        self._watches.setdefault(job_id, set()).add(watch)
        if self._closed:
            watch.wake()
            return watch
        if self._task is None:
            self._ready = asyncio.Event()
            self._cursor = None
            self._task = asyncio.ensure_future(self._run())
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(READY_TIMEOUT):
                    await self._ready.wait()
        if job_id in self._finished:
            watch.wake()  # its final event was read before this watch: re-read at once
        watch.covers_add = self._live and job_id in self._added
        return watch

    def adding(self) -> Callable[[list[str]], None] | None:
        """Taken before an add: what to call with the ids added (they are remembered if
        the reader had no gap in between), None while the reader is not live."""
        if not self._live:
            return None
        epoch = self._epoch

        def added(job_ids: list[str]) -> None:
            if epoch != self._epoch or not self._live:
                return
            remembered = self._added
            for job_id in job_ids:
                remembered[job_id] = None
            while len(remembered) > REMEMBER:
                del remembered[next(iter(remembered))]

        return added

    def _lose_track(self) -> None:
        """A gap: events may go unread; forget what the remembered ids promised."""
        self._live = False
        self._epoch += 1
        self._added.clear()
        self._finished.clear()

    def _finish(self, job_id: str) -> None:
        finished = self._finished
        finished[job_id] = None
        if len(finished) > REMEMBER:
            oldest = next(iter(finished))
            del finished[oldest]
            self._added.pop(oldest, None)  # its final event is forgotten: look again

    def forget(self, watch: _Watch) -> None:
        """Unsubscribe ``watch`` (idempotent)."""
        found = self._watches.get(watch.job_id)
        if found is not None:
            found.discard(watch)
            if not found:
                del self._watches[watch.job_id]
        self._last_watch = time.monotonic()

    def _wanted(self) -> bool:
        """Whether the loop goes on: somebody waits, or did within one block interval."""
        if self._closed:
            return False
        return bool(self._watches) or time.monotonic() - self._last_watch < BLOCK_MS / 1000

    def _wake_all(self) -> None:
        for watches in self._watches.values():
            for watch in watches:
                watch.wake()

    def _dispatch(self, reply: Any, reads: dict[str, JobInfo] | None = None) -> bool:
        """Wake the waiters of every job the entries finish (with the job as ``reads``
        has it, read after these entries); True when one was woken. Takes redis-py's
        parsed reply (fields as a dict) or the raw one (a flat list)."""
        woke = False
        streams = reply.items() if isinstance(reply, dict) else (reply or [])
        for _key, entries in streams:
            for entry_id, fields in entries:
                self._cursor = entry_id
                if not isinstance(fields, dict):
                    fields = dict(zip(fields[::2], fields[1::2], strict=False))
                if fields.get("event") in FINAL_EVENTS:
                    job_id = str(fields.get("jobId"))
                    if self._live:
                        self._finish(job_id)
                    read = reads.get(job_id) if reads else None
                    for watch in self._watches.get(job_id, ()):
                        watch.wake(read)
                        woke = True
        return woke

    async def _xread(self, client: Redis) -> tuple[Any, dict[str, JobInfo] | None]:
        """One blocking XREAD from the cursor, over a connection the reader keeps (a
        :class:`DedicatedLink`: no pool round and no reply parsing per read; a busy queue
        writes several entries per job, and the reader wakes for each batch); while jobs
        are waited for, their final reads (:mod:`queuekit.redis.final_reads`) behind it."""
        if self._link is None:
            self._link = DedicatedLink(client)
        cursor = str(self._cursor)
        xread = ("XREAD", "COUNT", READ_COUNT, "BLOCK", BLOCK_MS, "STREAMS", self.key, cursor)
        final = self._reads
        if final is not None and final.enabled and self._watches:
            replies = await self._link.call_many(
                [xread, *final.commands(cursor, islice(self._watches, WATCHED))])
            if replies is not None:
                if isinstance(replies[0], Exception):
                    raise replies[0]
                try:
                    return replies[0], final.parse(replies[1:])
                except Exception as exc:  # a job hash get_job could not read either
                    log.debug("events reader of %s: final reads: %s", self.queue, exc,
                              extra={"queue": self.queue})
                    return replies[0], None
        return await self._link.call(
            *xread, direct=lambda: client.xread({self.key: cursor}, count=READ_COUNT,
                                                block=BLOCK_MS)), None

    async def _position(self, client: Redis) -> str:
        last: Any = await client.xrevrange(self.key, count=1)
        return str(last[0][0]) if last else "0-0"

    async def _run(self) -> None:
        pause = RETRY_START
        try:
            while self._wanted():
                try:
                    if self._client is None:
                        self._client = self._make_client()
                    if self._cursor is None:
                        self._cursor = await self._position(self._client)
                        self._live = True
                        self._ready.set()
                    # The connection has no socket timeout (it blocks on purpose); this
                    # bound notices a connection that died without a reset.
                    async with asyncio.timeout(BLOCK_MS / 1000 + 5):
                        reply, reads = await self._xread(self._client)
                except Exception as exc:
                    # Connection errors are expected (a restart, a failover); anything else
                    # (a cluster client giving up on its slot map) is worth a warning. The
                    # reader never dies of it: waiters would fall back to 1 s re-reads.
                    level = (logging.DEBUG if isinstance(exc, RedisError | OSError)
                             else logging.WARNING)
                    log.log(level, "events reader of %s: %s; retrying in %.2f s", self.queue,
                            exc, pause, extra={"queue": self.queue})
                    self._lose_track()
                    self._ready.set()  # waiters fall back to re-reading their job
                    self._wake_all()
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, RETRY_CAP)
                    continue
                pause = RETRY_START
                # Read on from the cursor after a gap: what follows is all seen again.
                self._live = True
                if self._dispatch(reply, reads):
                    # Let the woken waiters read their jobs before the next XREAD is sent.
                    await asyncio.sleep(0)
        finally:
            # No await between the loop's last check and this: a watch that arrives
            # later sees no task and starts a new one from the stream's current end.
            self._task = None
            self._lose_track()

    async def aclose(self) -> None:
        """Stop the reader, wake every waiter (they re-read and see the service closed)."""
        self._closed = True
        self._lose_track()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._link is not None:
            await self._link.aclose()
        self._wake_all()


class JobWaiters:
    """The event readers of one service, one per queue, created on first use."""

    def __init__(self, make_client: Callable[[], Redis],
                 release_client: Callable[[Redis], Any],
                 events_key: Callable[[str], str],
                 final_reads: Callable[[str], FinalReads | None]) -> None:
        self._make_client = make_client
        self._release_client = release_client
        self._events_key = events_key
        self._final_reads = final_reads
        self._readers: dict[str, QueueEventReader] = {}

    def reader(self, queue: str) -> QueueEventReader:
        """The reader of ``queue`` (created, not started, on first use)."""
        found = self._readers.get(queue)
        if found is None:
            found = self._readers[queue] = QueueEventReader(
                self._make_client, self._events_key(queue), queue, self._final_reads(queue))
        return found

    async def watch(self, queue: str, job_id: str) -> JobWatch:
        """Subscribe to one job of ``queue``."""
        return await self.reader(queue).watch(job_id)

    def before_add(self, queue: str) -> Callable[[list[str]], None] | None:
        """Taken before adding jobs whose ids Redis chooses (a custom id may name a job
        that finished long ago): what to call with their ids once added, so that their
        waits skip the first look; None when no reader of ``queue`` is live."""
        reader = self._readers.get(queue)
        return None if reader is None else reader.adding()

    async def aclose(self) -> None:
        """Stop every reader and release its connection."""
        readers = list(self._readers.values())
        self._readers.clear()
        for reader in readers:
            await reader.aclose()
            if reader.client is not None:
                try:
                    await self._release_client(reader.client)
                except (RedisError, OSError) as exc:
                    log.debug("releasing the events reader of %s: %s", reader.queue, exc)


async def told(pending: Awaitable[_Added], added: Callable[[list[str]], None]) -> _Added:
    """The id (or ids) of jobs being added (``pending``), told to ``added`` (what
    :meth:`JobWaiters.before_add` gave) once known."""
    found = await pending
    added(found if isinstance(found, list) else [found])
    return found
