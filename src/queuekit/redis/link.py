"""A redis-py connection's socket driven directly: the auto-pipeline's transport.

redis-py's asyncio connection reads through a ``StreamReader`` (a read future per reply,
a coroutine per write for ``drain``, its parser's and observability layers on top). The
auto-pipeline keeps its connections to itself, so once redis-py has opened one (TLS,
``AUTH``, ``HELLO``, ``SELECT`` and ``CLIENT SETNAME`` stay its work), :class:`Link` takes
over the connection's transport with a protocol that feeds a hiredis reader straight
from ``data_received`` and completes the oldest caller's future with each reply: one
write per batch, no task, no timeout context per reply.

The connection object stays redis-py's: closing goes through ``disconnect()``, and the
stream's own protocol still hears that the socket closed (redis-py waits for that). A
link's connection never goes back to the pool as it is: it is disconnected first.
Without hiredis (an optional extra) :meth:`Link.take` declines and the auto-pipeline
talks through redis-py's connection as before.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse

try:  # the "fast" extra
    import hiredis
    from redis._parsers.hiredis import _AsyncHiredisParser
except ImportError:  # pragma: no cover - the dev and CI environments install hiredis
    hiredis = None  # type: ignore[assignment]

#: What the reader answers while a reply is incomplete (a RESP3 reply may be False).
_INCOMPLETE = object()


class Link(asyncio.Protocol):
    """Replies of one connection, in order, to the futures waiting for them."""

    def __init__(self, connection: AbstractConnection, transport: asyncio.Transport,
                 reader: Any, timeout: float | None = None) -> None:
        self.connection = connection
        self._transport = transport
        self._stream: asyncio.BaseProtocol = transport.get_protocol()
        self._reader = reader
        self._loop = asyncio.get_running_loop()
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._lost: Exception | None = None
        # A read timeout as redis-py's socket_timeout: no reply for `timeout` seconds while
        # a command waits fails the link. One watchdog tick per quarter of it, not a timer
        # per call; `_since` is when the oldest waiting command last saw a reply arrive.
        self._timeout = timeout
        #: Batches an auto-pipeline has in flight on this link (it shares one link).
        self.batches = 0
        self._since = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        if timeout:
            self._watchdog = self._loop.call_later(timeout / 4, self._tick)
        transport.set_protocol(self)

    @classmethod
    def take(cls, connection: AbstractConnection, timeout: float | None = None) -> Link | None:
        """Drive ``connection``'s socket from now on; None when it can't be done (no
        hiredis, a parser of another kind, bytes redis-py has read but not parsed)."""
        parser: Any = getattr(connection, "_parser", None)
        writer: Any = getattr(connection, "_writer", None)
        stream: Any = getattr(connection, "_reader", None)
        if hiredis is None or not isinstance(parser, _AsyncHiredisParser) or writer is None:
            return None
        if parser._reader is None or parser._reader.has_data() or stream._buffer:
            return None
        if _ended(connection):
            return None
        encoder = connection.encoder
        options: dict[str, Any] = {"protocolError": InvalidResponse,
                                   "replyError": parser.parse_error,
                                   "notEnoughData": _INCOMPLETE}
        if encoder.decode_responses:
            options.update(encoding=encoder.encoding, errors=encoder.encoding_errors)
        return cls(connection, writer.transport, hiredis.Reader(**options), timeout)

    @classmethod
    async def open(cls, pool: Any, timeout: float | None = None) -> Link | AbstractConnection:
        """A connection of ``pool``, as a link where one can be made."""
        connection: AbstractConnection = await pool.get_connection()
        if _ended(connection):
            # The server closed or reset it after the pool's check (a killed server):
            # a link would never hear of it again, as the stream has had its EOF.
            await connection.disconnect()
            await connection.connect()  # type: ignore[no-untyped-call]
        return cls.take(connection, timeout) or connection

    def send(self, *args: Any) -> asyncio.Future[Any]:
        """Write one command; the future of its reply (an error answer is its result, an
        exception object). Raises when the connection has failed."""
        self._check()
        packed = self.connection.pack_command(*args)  # may refuse an argument: first
        future = self._loop.create_future()
        if not self._waiting:
            self._since = self._loop.time()
        self._waiting.append(future)
        self._transport.writelines(packed)
        return future

    @property
    def failed(self) -> bool:
        """Whether the connection has failed (no command can be sent on it)."""
        return self._lost is not None or self._transport.is_closing()

    def _check(self) -> None:
        if self._lost is None and self._transport.is_closing():
            self._fail(RedisConnectionError("connection closed"))  # closed before us
        if self._lost is not None:
            raise self._lost

    async def call(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write; their replies in order (an error answer is its
        command's reply, an exception object). Raises when the connection fails."""
        return await self.replies(self.start(commands))

    def start(self, commands: list[tuple[Any, ...]]) -> list[asyncio.Future[Any]]:
        """Write ``commands`` now, in one write; the futures of their replies, for
        :meth:`replies`. Raises when the connection has failed."""
        self._check()
        # hiredis per command (FastConnection), without redis-py's re-buffering loop;
        # may refuse an argument: before anything is queued.
        pack = self.connection.pack_command
        packed = [chunk for args in commands for chunk in pack(*args)]
        futures = [self._loop.create_future() for _ in commands]
        if not self._waiting:
            self._since = self._loop.time()
        self._waiting.extend(futures)
        self._transport.writelines(packed)
        return futures

    @staticmethod
    async def replies(futures: list[asyncio.Future[Any]]) -> list[Any]:
        """The replies of commands :meth:`start` wrote, in order."""
        try:
            return [await future for future in futures]
        except BaseException:
            for future in futures:  # nobody awaits the rest: no "never retrieved" warning
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()
            raise

    async def aclose(self) -> None:
        """Close the socket through redis-py (the connection can then go to its pool)."""
        self._fail(RedisConnectionError("connection closed"))
        await self.connection.disconnect()

    # -- asyncio.Protocol ----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        reader, waiting = self._reader, self._waiting
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not _INCOMPLETE:
                if not waiting:  # a reply nobody asked for: out of step with the server
                    raise InvalidResponse("a reply without a command")
                future = waiting.popleft()
                if not future.done():
                    future.set_result(reply)
            if waiting:
                self._since = self._loop.time()
        except InvalidResponse as exc:
            self._fail(RedisConnectionError(f"bad reply from Redis: {exc}"))
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = "Connection closed by server." if exc is None else f"Connection lost: {exc}"
        self._fail(RedisConnectionError(reason))
        self._stream.connection_lost(exc)  # redis-py's disconnect() waits for its stream

    def _tick(self) -> None:
        assert self._timeout is not None
        if self._lost is not None:
            return
        if self._waiting and self._loop.time() - self._since >= self._timeout:
            self._fail(TimeoutError(f"no reply from Redis in {self._timeout:g} s"))
            self._transport.close()
            return
        self._watchdog = self._loop.call_later(self._timeout / 4, self._tick)

    def _fail(self, error: Exception) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._lost is None:
            self._lost = error
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(self._lost)


def _ended(connection: AbstractConnection) -> bool:
    """Whether redis-py's stream of ``connection`` has seen its end (EOF, a reset)."""
    writer: Any = getattr(connection, "_writer", None)
    stream: Any = getattr(connection, "_reader", None)
    if writer is None or stream is None:
        return False
    return bool(writer.transport.is_closing() or stream.at_eof()
                or stream.exception() is not None)


class DedicatedLink:
    """One connection of ``client`` kept for one caller's commands, one at a time (a
    worker's blocking wait on its marker, an events reader's XREAD), over a :class:`Link`.

    A command that fails or is cancelled mid-reply drops the connection (its state is
    unknown); the next one opens another. Where no link can be made (a cluster client,
    no hiredis) the command goes through the caller's ``direct`` call (the client's own
    method), else ``client.execute_command``.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._pool: Any = getattr(client, "connection_pool", None)
        self._link: Link | None = None
        self._direct = self._pool is None or hiredis is None

    async def call(self, *args: Any, direct: Callable[[], Awaitable[Any]] | None = None) -> Any:
        """The reply of one command (an error answer is raised). ``direct`` is the same
        command through the client's own method, for when no link can be made (a cluster
        client routes by the keys that method names)."""
        link = await self._opened()
        if link is None:
            return await (direct() if direct is not None
                          else self._client.execute_command(*args))
        (reply,) = await self._exchange(link, [args])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def call_many(self, commands: list[tuple[Any, ...]]) -> list[Any] | None:
        """The replies of ``commands``, sent in one write (an error answer is its
        command's reply, an exception object); None, with nothing sent, where no link
        can be made. Redis runs a command queued behind a blocking one as soon as that
        one is answered: its reply comes in the same round trip."""
        link = await self._opened()
        return None if link is None else await self._exchange(link, commands)

    async def _opened(self) -> Link | None:
        if self._link is None and not self._direct:
            opened = await Link.open(self._pool)
            if isinstance(opened, Link):
                self._link = opened
            else:  # pragma: no cover - a parser of another kind
                await self._pool.release(opened)
                self._direct = True
        return self._link

    async def _exchange(self, link: Link, commands: list[tuple[Any, ...]]) -> list[Any]:
        try:
            return await link.call(commands)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Close the connection (if one is open) and give it back to the pool."""
        link, self._link = self._link, None
        if link is not None:
            await link.aclose()
            await self._pool.release(link.connection)
