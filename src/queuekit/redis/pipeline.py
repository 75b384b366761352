"""Auto-pipelining for redis-py: commands issued in the same event-loop turn share one
round trip, as ioredis's ``enableAutoPipelining`` does for Node.

Each caller still awaits its own reply or its own error; only the transport is shared.
redis-py's ``AsyncScript`` accepts this object as its ``client``, so BullMQ's Lua scripts
(``EVALSHA``, reloading on ``NOSCRIPT``) go through it unchanged.

The first command while nothing is in flight goes out at once; commands issued while
a batch is in flight gather into the next. Batches are written straight to connections
this object keeps (redis-py's ``Pipeline`` costs about as much per batch as the commands
in a small one), and capped at
``max_batch`` commands: several small batches in flight keep Redis and this process busy
at the same time, where one large batch makes each wait for the other.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

Pending = list[tuple[tuple[Any, ...], "asyncio.Future[Any]"]]


class AutoPipeline:
    """Coalesces concurrent commands into pipelined batches (no MULTI: no transaction)."""

    def __init__(self, client: Redis, max_batch: int = 64,
                 timeout: float | None = None) -> None:
        self._client = client
        # A cluster client has no single pool: ClusterAutoPipeline sends its own way.
        self._pool: Any = getattr(client, "connection_pool", None)
        self._max_batch = max_batch
        self._timeout = timeout
        self._pending: Pending = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        self._inline = 0  # lone commands being sent by their own caller
        self._idle: list[AbstractConnection] = []
        self.batches = 0
        self.commands = 0

    async def execute_command(self, *args: Any) -> Any:
        """Queue one command for the next batch and await its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending and not self._sending and not self._inline:
            # Nothing in flight: the caller sends its command itself, with no task and
            # no extra loop turn; callers arriving meanwhile gather into the next batch.
            self._inline += 1
            try:
                await self._send([(args, future)])
            finally:
                self._inline -= 1
            return future.result()
        self._pending.append((args, future))
        if len(self._pending) >= self._max_batch or not (self._sending or self._inline):
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

    async def _send(self, batch: Pending) -> None:
        """Send one batch; each caller gets its own reply or error."""
        self.batches += 1
        self.commands += len(batch)
        try:
            replies = await self._replies(batch)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the transport failed: every waiting caller gets it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _replies(self, batch: Pending) -> list[Any]:
        """Every command's reply, or its own error answer; raises when the transport
        fails (then the whole batch failed)."""
        healthy = False
        connection: AbstractConnection | None = None
        try:
            connection = (self._idle.pop() if self._idle
                          else await self._pool.get_connection())
            replies: list[Any] = []
            async with asyncio.timeout(self._timeout):
                await connection.send_packed_command(
                    connection.pack_commands([args for args, _ in batch]), check_health=False)
                for _ in batch:
                    try:
                        replies.append(await connection.read_response())
                    except ResponseError as error:  # this command's error, not the batch's
                        replies.append(error)
            healthy = True
            return replies
        finally:
            if connection is not None:
                if healthy:
                    self._idle.append(connection)
                else:
                    await connection.disconnect()
                    await self._pool.release(connection)

    async def aclose(self) -> None:
        """Wait for batches in flight, then give the kept connections back to the pool."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._pool.release(connection)
