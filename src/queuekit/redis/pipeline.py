"""Auto-pipelining for redis-py: commands issued in the same event-loop turn share one
round trip, as ioredis's ``enableAutoPipelining`` does for Node.

Each caller still awaits its own reply or its own error; only the transport is shared.
redis-py's ``AsyncScript`` accepts this object as its ``client``, so BullMQ's Lua scripts
(``EVALSHA``, reloading on ``NOSCRIPT``) go through it unchanged.

The first command while nothing is in flight goes out at once; commands issued while
a batch is in flight gather into the next. Batches are written straight to connections
this object keeps (redis-py's ``Pipeline`` costs about as much per batch as the commands
in a small one), through :class:`~queuekit.redis.link.Link` where hiredis is installed
(one write and one future per reply, no stream layers), and capped at ``max_batch``
commands: several small batches in flight keep Redis and this process busy
at the same time, where one large batch makes each wait for the other. Batches in flight
at once go one behind the other on one link, as ioredis sends them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError

from queuekit.redis.link import Link

Pending = list[tuple[tuple[Any, ...], "asyncio.Future[Any]"]]

#: How often a script is loaded for one call before its ``NOSCRIPT`` is the answer.
SCRIPT_LOADS = 3


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
        self._idle: list[Link | AbstractConnection] = []
        self._shared: Link | None = None  # the link batches in flight share
        self._opening: asyncio.Future[None] | None = None  # set while one is being opened
        self.batches = 0
        self.commands = 0

    #: Whether :meth:`transaction` can be used (one server, not a cluster).
    transactions = True

    async def execute_command(self, *args: Any) -> Any:
        """Queue one command for the next batch and await its reply."""
        return await self.send(*args)

    def send(self, *args: Any) -> Awaitable[Any]:
        """Write one command now where it can be, and return the awaitable of its reply:
        what the caller does before awaiting it overlaps Redis's work on the command.

        Alone, with a link at hand (the common case of one await at a time), the command
        goes straight to the link's socket, without a batch's layers; otherwise it joins
        the next batch when awaited. The awaitable must be awaited: it gives the link back.
        """
        idle = self._idle
        if not (idle and type(idle[-1]) is Link and not self._pending and not self._sending
                and not self._inline):
            return self._batched(args)
        link: Link = idle.pop()  # type: ignore[assignment]
        self._inline += 1
        self.batches += 1
        self.commands += 1
        try:
            reply = link.send(*args)
        except BaseException as exc:  # the transport failed, or an argument was refused
            return self._settle(link, exc, inline=True)
        return self._settle(link, reply, inline=True)

    async def _settle(self, link: Link, reply: Awaitable[Any] | BaseException,
                      inline: bool) -> Any:
        """The reply (``reply``'s result) of what was written on ``link``, an error answer
        raised; gives the link back, or drops it when the transport failed or the caller
        was cancelled."""
        try:
            if isinstance(reply, BaseException):
                raise reply
            answer = await reply
        except BaseException:
            await self._discard(link)
            raise
        finally:
            if inline:
                self._inline -= 1
        self._idle.append(link)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def _batched(self, args: tuple[Any, ...]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entries = [(args, future)]
        if self._queued(entries):
            return await future
        await self._send_inline(entries)
        return future.result()

    async def execute_batch(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Several commands in one batch (one write; no MULTI), replies in order.

        A command's own error answer (``ResponseError``) is its reply, not raised; a
        transport error is raised (then none of the replies is known).
        """
        loop = asyncio.get_running_loop()
        entries: Pending = [(args, loop.create_future()) for args in commands]
        if self._queued(entries):
            await asyncio.wait([future for _, future in entries])
        else:
            await self._send_inline(entries)
        replies = [future.exception() or future.result() for _, future in entries]
        for reply in replies:
            if isinstance(reply, BaseException) and not isinstance(reply, ResponseError):
                raise reply
        return replies

    def _queued(self, entries: Pending) -> bool:
        """Queue ``entries`` for the next batch; False (nothing queued) when nothing is in
        flight: then the caller sends them itself, with no task and no extra loop turn,
        and callers arriving meanwhile gather into the next batch."""
        if not self._pending and not self._sending and not self._inline:
            return False
        self._pending.extend(entries)
        if len(self._pending) >= self._max_batch or not (self._sending or self._inline):
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return True

    async def _send_inline(self, entries: Pending) -> None:
        self._inline += 1
        try:
            await self._send(entries)
        finally:
            self._inline -= 1

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        """``EVALSHA`` through the batch (what ``AsyncScript.__call__`` calls)."""
        return await self.send("EVALSHA", sha, numkeys, *args)

    async def script_load(self, script: str | bytes) -> str:
        """``SCRIPT LOAD`` directly (after a ``NOSCRIPT``, e.g. a restarted server)."""
        return str(await self._client.script_load(script))

    async def run_script(self, script: Any, keys: Sequence[Any], args: Sequence[Any],
                         lost: bool = False) -> Any:
        """The reply of redis-py ``script`` run with ``keys`` and ``args``, loading it where
        the server lost it (a restart); ``lost``: it answered ``NOSCRIPT`` already, so the
        script is loaded first.

        A server restarted between the load and the call (its client retried onto the new
        one) has lost it again: it is loaded up to :data:`SCRIPT_LOADS` times.
        """
        loads = 0
        while True:
            if lost:
                script.sha = await self.script_load(script.script)
                loads += 1
            try:
                return await self.send("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                if loads == SCRIPT_LOADS:
                    raise
                lost = True

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

    async def transaction(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``MULTI``, ``commands``, ``EXEC`` in one write on one connection: the replies of
        the commands (a command's error answer is its reply, an exception object).

        Raises when the transport failed (then it is unknown whether the transaction ran)
        or Redis refused it (``EXECABORT``: a command was refused while queued; nothing
        ran). Like a batch it bypasses redis-py's ``Pipeline``, which reads every
        ``QUEUED`` reply through its own layers.
        """
        return await self.start_transaction(commands)

    def start_transaction(self, commands: Sequence[tuple[Any, ...]]) -> Awaitable[list[Any]]:
        """:meth:`transaction`, written now when a kept link is idle (else when awaited):
        the awaitable of its replies, which must be awaited."""
        wrapped = [("MULTI",), *commands, ("EXEC",)]
        idle = self._idle
        if not (idle and type(idle[-1]) is Link):
            return self._executed(self._exchange(wrapped))
        link: Link = idle.pop()  # type: ignore[assignment]
        try:
            futures = link.start(wrapped)
        except BaseException as exc:  # the transport failed, or an argument was refused
            return self._settle(link, exc, inline=False)
        return self._executed(self._settle(link, link.replies(futures), inline=False))

    @staticmethod
    async def _executed(replies: Awaitable[list[Any]]) -> list[Any]:
        found = await replies
        for reply in found:
            if isinstance(reply, Exception):  # refused in MULTI (the first says why)
                raise reply
        result = found[-1]
        assert isinstance(result, list)  # no WATCH: EXEC answers the replies
        return result

    async def _replies(self, batch: Pending) -> list[Any]:
        """Every command's reply, or its own error answer; raises when the transport
        fails (then the whole batch failed)."""
        return await self._exchange([args for args, _ in batch])

    async def _exchange(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """``commands`` in one write on a connection of this object's, their replies.

        Batches in flight at once go one behind the other on one link, as ioredis sends
        all of a process's commands on one connection: Redis reads and answers several of
        them per system call, where a connection each costs it a read and a write per
        batch. A link keeps its replies in step whether or not their callers still wait.
        """
        connection = await self._batch_connection()
        if not isinstance(connection, Link):
            return await self._exchange_direct(connection, commands)
        link = connection
        link.batches += 1
        try:
            return await link.call(commands)
        finally:
            link.batches -= 1
            if self._shared is link and (link.failed or not link.batches):
                self._shared = None  # no further batch on it
            if not link.batches:  # the last batch on it keeps or discards it
                if link.failed:
                    await self._discard(link)
                else:
                    self._idle.append(link)

    async def _batch_connection(self) -> Link | AbstractConnection:
        """The shared link, else a kept connection, else a new one; batches arriving while
        it is being opened wait for it rather than open one each."""
        while True:
            link = self._shared
            if link is not None and not link.failed:
                return link
            if self._idle:
                connection = self._idle.pop()
                if isinstance(connection, Link) and connection.failed:
                    await self._discard(connection)  # closed while kept (a restart)
                    continue
            elif self._opening is not None:
                await asyncio.wait([self._opening])  # not cancelled if this caller is
                continue
            else:
                self._opening = asyncio.get_running_loop().create_future()
                try:
                    connection = await self._connect()
                finally:
                    opened, self._opening = self._opening, None
                    opened.set_result(None)
            if isinstance(connection, Link) and (self._shared is None or self._shared.failed):
                self._shared = connection
            return connection

    async def _exchange_direct(self, connection: AbstractConnection,
                               commands: list[tuple[Any, ...]]) -> list[Any]:
        """``commands`` through redis-py's ``connection`` (no hiredis), one batch each."""
        healthy = False
        try:
            async with asyncio.timeout(self._timeout):
                replies = await self._call(connection, commands)
            healthy = True
            return replies
        finally:
            if healthy:
                self._idle.append(connection)
            else:
                await self._discard(connection)

    async def _connect(self) -> Link | AbstractConnection:
        return await Link.open(self._pool, self._timeout)

    @staticmethod
    async def _call(connection: AbstractConnection, commands: list[tuple[Any, ...]]
                    ) -> list[Any]:
        # Through redis-py's connection (no hiredis).
        await connection.send_packed_command(connection.pack_commands(commands),
                                             check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as error:  # this command's error, not the batch's
                replies.append(error)
        return replies

    async def _discard(self, connection: Link | AbstractConnection) -> None:
        """Close a connection (a link's socket is this object's) and give it back."""
        if isinstance(connection, Link):
            await connection.aclose()
            connection = connection.connection
        else:
            await connection.disconnect()
        await self._pool.release(connection)

    async def aclose(self) -> None:
        """Wait for batches in flight, then give the kept connections back to the pool."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        idle, self._idle = self._idle, []
        for connection in idle:
            if isinstance(connection, Link):
                await self._discard(connection)
            else:
                await self._pool.release(connection)
