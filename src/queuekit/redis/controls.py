"""Queue controls and deduplication on Redis: BullMQ's own scripts and keys.

``pause`` / ``resume`` are BullMQ 6's ``pause`` script (the ``paused`` field of the
queue's meta hash; jobs stay in ``wait``), ``remove_job`` / ``clean`` / ``drain`` /
``obliterate`` its ``removeJob`` / ``cleanJobsInSet`` / ``drain`` / ``obliterate``, global
concurrency the ``concurrency`` field of meta, and a deduplicated add is the add script
with BullMQ's ``de:<id>`` key, read in the same MULTI to tell a duplicate apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import bullmq

from queuekit.errors import FieldError, JobActiveError, PayloadValidationError
from queuekit.records import PreparedJob
from queuekit.redis.keys import dedup_key, job_key
from queuekit.redis.wire import bullmq_options

if TYPE_CHECKING:
    from queuekit.redis.service import RedisQueueService

#: queuekit's state names that BullMQ's sets spell differently.
_SET_NAMES = {"waiting": "wait"}
#: Jobs one ``cleanJobsInSet`` / ``obliterate`` call handles (Node's batches).
_CLEAN_BATCH = 10_000
_OBLITERATE_BATCH = 1000


def register_bullmq_script(client: Any, name: str) -> Any:
    """One of bullmq's Lua scripts that bullmq itself does not load (e.g.
    ``moveJobFromActiveToWait-9``), registered on ``client``."""
    path = Path(bullmq.__file__).parent / "commands" / f"{name}.lua"
    return client.register_script(path.read_text())


class RedisControls:
    """The Redis side of :class:`~queuekit.controls.ControlsMixin` for one service."""

    def __init__(self, service: RedisQueueService) -> None:
        self._service = service

    def _call(self, fn: Any) -> Any:
        return self._service.breaker.call(fn)

    # -- deduplication -----------------------------------------------------------------

    async def add_dedup(self, job: PreparedJob) -> tuple[str, bool]:
        service = self._service
        assert job.options.deduplication is not None
        command = service.add_command(job.queue)
        call = command.build(job.name, job.wire, bullmq_options(job.options))
        key = dedup_key(service.queue_prefix(job.queue), job.queue, job.options.deduplication.id)
        job_id, before = await self._call(
            lambda: command.add_watching(service.connection.client, call, key))
        return job_id, before is not None and before == job_id

    async def dedup_job_id(self, queue: str, dedup_id: str) -> str | None:
        client = self._service.connection.client
        value = await self._call(
            lambda: client.get(dedup_key(self._service.queue_prefix(queue), queue, dedup_id)))
        return None if value is None else str(value)

    # -- pause -------------------------------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        scripts = self._service.get_queue(queue).scripts

        async def run() -> None:
            remaining = await scripts.pause(paused)
            # Resume moves a legacy (BullMQ < 5) paused list back in batches of 7000.
            while not paused and int(remaining or 0) > 0:
                remaining = await scripts.pause(False)

        await self._call(run)

    async def is_paused(self, queue: str) -> bool:
        bull_queue = self._service.get_queue(queue)
        return bool(await self._call(
            lambda: bull_queue.client.hexists(bull_queue.keys["meta"], "paused")))

    # -- removing ----------------------------------------------------------------------

    async def remove_job(self, queue: str, job_id: str) -> bool:
        service = self._service
        scripts = service.get_queue(queue).scripts
        client = service.connection.client

        async def run() -> bool:
            if not await client.exists(job_key(service.queue_prefix(queue), queue, job_id)):
                return False
            result = int(await scripts.remove(job_id, True))
            if result == -8:
                raise PayloadValidationError("job removal", [FieldError(
                    "job_id", f"job {job_id!r} is the next run of a job scheduler; remove "
                              "the scheduler instead")])
            if result == 0:
                raise JobActiveError(
                    f"job {job_id!r} on queue {queue!r} is active (a worker holds its "
                    "lock); wait for it to finish, then remove it")
            return True

        result: bool = await self._call(run)
        return result

    async def clean(self, queue: str, state: str, grace_ms: int, limit: int) -> list[str]:
        scripts = self._service.get_queue(queue).scripts
        set_name = _SET_NAMES.get(state, state)

        async def run() -> list[str]:
            removed: list[str] = []
            while True:
                batch = _CLEAN_BATCH if limit == 0 else min(limit - len(removed), _CLEAN_BATCH)
                ids = [str(i) for i in await scripts.cleanJobsInSet(set_name, grace_ms, batch)]
                removed.extend(ids)
                if len(ids) < batch or (limit and len(removed) >= limit):
                    return removed

        result: list[str] = await self._call(run)
        return result

    async def drain(self, queue: str) -> None:
        scripts = self._service.get_queue(queue).scripts
        await self._call(lambda: scripts.drain(True))

    async def obliterate(self, queue: str, force: bool) -> None:
        bull_queue = self._service.get_queue(queue)
        scripts, client = bull_queue.scripts, bull_queue.client
        keys = scripts.getKeys(["meta", ""])
        obliterate = scripts.commands["obliterate"]

        async def run() -> None:
            was_paused = await client.hexists(bull_queue.keys["meta"], "paused")
            # BullMQ obliterates only a paused queue: no worker starts a job meanwhile.
            await scripts.pause(True)
            while True:
                result = int(await obliterate(keys, args=[_OBLITERATE_BATCH,
                                                           "force" if force else ""]))
                if result == -2:
                    if not was_paused:
                        await scripts.pause(False)
                    raise JobActiveError(
                        f"queue {queue!r} has active jobs; obliterate it when they have "
                        "finished, or pass force=True")
                if result == -1:  # resumed meanwhile: pause again and go on
                    await scripts.pause(True)
                elif result <= 0:
                    return

        await self._call(run)

    # -- global concurrency ------------------------------------------------------------

    async def set_global_concurrency(self, queue: str, n: int | None) -> None:
        bull_queue = self._service.get_queue(queue)
        if n is None:
            await self._call(bull_queue.removeGlobalConcurrency)
        else:
            await self._call(lambda: bull_queue.setGlobalConcurrency(n))

    async def get_global_concurrency(self, queue: str) -> int | None:
        bull_queue = self._service.get_queue(queue)
        value = await self._call(bull_queue.getGlobalConcurrency)
        return None if value is None else int(value)
