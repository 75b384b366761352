"""Auto-pipelining for redis-py: commands issued in the same event-loop turn share one
round trip, as ioredis's ``enableAutoPipelining`` does for Node.

Each caller still awaits its own reply or its own error; only the transport is shared.
redis-py's ``AsyncScript`` accepts this object as its ``client``, so BullMQ's Lua scripts
(``EVALSHA``, reloading on ``NOSCRIPT``) go through it unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis


class AutoPipeline:
    """Coalesces concurrent commands into pipelined batches (no MULTI: no transaction)."""

    def __init__(self, client: Redis, max_batch: int = 512) -> None:
        self._client = client
        self._max_batch = max_batch
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.commands = 0

    async def execute_command(self, *args: Any) -> Any:
        """Queue one command for the next batch and await its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, future))
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        """``EVALSHA`` through the batch (what ``AsyncScript.__call__`` calls)."""
        return await self.execute_command("EVALSHA", sha, numkeys, *args)

    async def script_load(self, script: str | bytes) -> str:
        """``SCRIPT LOAD`` directly (after a ``NOSCRIPT``, e.g. a restarted server)."""
        return str(await self._client.script_load(script))

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        self.batches += 1
        self.commands += len(batch)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for args, _ in batch:
                    pipe.execute_command(*args)
                results = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the transport failed: every caller gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
