"""The auto-pipeline over real Redis: its connections are driven by ``Link`` (hiredis fed
from the socket), replies and error answers reach their own callers, a broken or timed
out connection is dropped and the next batch opens a new one, and closing gives every
connection back to its pool; a command sent with ``send`` is written before its reply
is awaited."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from queuekit.redis.link import Link
from queuekit.redis.pipeline import AutoPipeline
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    found = Redis.from_url(redis_server.url, decode_responses=True)
    yield found
    await found.aclose()


async def test_replies_and_error_answers_reach_their_callers(client: Redis,
                                                             key_prefix: str) -> None:
    pipe = AutoPipeline(client)
    key = f"{key_prefix}:h"
    # Concurrent callers' batches may go out on different connections, so Redis may run
    # them in any order: the hash exists before they start.
    assert await pipe.execute_command("HSET", key, "a", "1") == 1
    results = await asyncio.gather(
        pipe.execute_command("HSET", key, "b", "2"),
        pipe.execute_command("EVALSHA", "0" * 40, 0),
        pipe.execute_command("HGET", key, "a"),
        pipe.execute_command("INCR", key),  # WRONGTYPE: this caller's error only
        return_exceptions=True)
    assert results[0] == 1
    assert isinstance(results[1], NoScriptError)  # redis-py's class, as AsyncScript expects
    assert results[2] == "1"
    assert await pipe.execute_command("HGETALL", key) in (
        {"a": "1", "b": "2"}, ["a", "1", "b", "2"])  # RESP3 or RESP2
    assert isinstance(results[3], ResponseError) and "WRONGTYPE" in str(results[3])
    assert pipe._idle and all(isinstance(c, Link) for c in pipe._idle)

    # A large reply arrives in several reads and still completes its own caller.
    value = "x" * 300_000
    state, echoed = await pipe.execute_batch(("SET", f"{key_prefix}:big", value),
                                             ("GET", f"{key_prefix}:big"))
    assert (state, echoed) == ("OK", value)
    await pipe.aclose()


async def test_a_killed_connection_fails_its_batch_and_the_next_one_reconnects(
        client: Redis, key_prefix: str) -> None:
    pipe = AutoPipeline(client)
    own_id = await pipe.execute_command("CLIENT", "ID")
    await client.client_kill_filter(_id=own_id)  # the pipeline's connection only
    with pytest.raises(RedisConnectionError):
        await pipe.execute_command("PING")
    assert await pipe.execute_command("SET", f"{key_prefix}:k", "v") == "OK"
    await pipe.aclose()


async def test_a_timed_out_batch_drops_its_connection_without_stray_errors(
        client: Redis, key_prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    pipe = AutoPipeline(client, timeout=0.2)
    await pipe.execute_command("PING")
    with pytest.raises(TimeoutError):
        # The second reply never comes in time (BLPOP blocks 2 s).
        await pipe.execute_batch(("PING",), ("BLPOP", f"{key_prefix}:never", 2), ("PING",))
    assert not pipe._idle  # the connection was dropped, not kept for the next batch
    assert await pipe.execute_command("PING") in ("PONG", True)
    gc.collect()
    await asyncio.sleep(0)
    # Futures of the dropped batch nobody awaits must not be reported by asyncio.
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    await pipe.aclose()


async def test_closing_gives_every_connection_back(client: Redis, key_prefix: str) -> None:
    pipe = AutoPipeline(client, max_batch=2)
    await asyncio.gather(*(pipe.execute_command("INCR", f"{key_prefix}:n") for _ in range(50)))
    assert int(await client.get(f"{key_prefix}:n") or 0) == 50
    pool = client.connection_pool
    assert pool._in_use_connections  # the pipeline keeps its own connections
    await pipe.aclose()
    assert not pool._in_use_connections
    # A returned connection works for redis-py again (its stream protocol is back).
    assert await client.ping()


async def test_an_argument_redis_py_refuses_fails_alone(client: Redis, key_prefix: str) -> None:
    from redis.exceptions import DataError

    pipe = AutoPipeline(client)
    await pipe.execute_command("SET", f"{key_prefix}:a", "1")
    with pytest.raises(DataError):
        await pipe.execute_command("SET", f"{key_prefix}:b", {"not": "packable"})
    # Nothing was sent for it, so the next reply is not handed to the wrong caller.
    assert await pipe.execute_command("GET", f"{key_prefix}:a") == "1"
    await pipe.aclose()


async def test_a_connection_the_server_closed_before_the_takeover_is_reopened(
        client: Redis) -> None:
    # The server closes a connection redis-py holds: its stream reads the EOF (and keeps
    # the transport half open). A link over it would never hear of it again and wait
    # for a reply forever, so it must be reconnected first.
    pool = client.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    await connection.send_command("CLIENT", "ID")
    own_id = await connection.read_response()
    await client.client_kill_filter(_id=own_id)
    stream: Any = connection._reader
    await eventually(lambda: asyncio.sleep(0, stream.at_eof()), bool)
    assert Link.take(connection) is None

    class HandsItOver:  # a pool handing out the connection as it is (no check of its own)
        async def get_connection(self) -> Any:
            return connection

    link = await Link.open(HandsItOver())
    assert isinstance(link, Link)
    async with asyncio.timeout(5):
        assert await link.call([("PING",)]) in (["PONG"], [True])
    await link.aclose()
    await pool.release(connection)


async def test_a_transaction_runs_all_or_nothing_in_one_write(client: Redis,
                                                              key_prefix: str) -> None:
    pipe = AutoPipeline(client)
    key = f"{key_prefix}:t"
    replies = await pipe.transaction([("SET", key, "1"), ("INCR", f"{key}:n"),
                                      ("HGET", key, "f"), ("GET", key)])
    # A command's error while the transaction runs is its reply; the others ran.
    assert replies[:2] == ["OK", 1] and replies[3] == "1"
    assert isinstance(replies[2], ResponseError) and "WRONGTYPE" in str(replies[2])
    # A command Redis refuses while queuing aborts the whole transaction: nothing ran.
    with pytest.raises(ResponseError, match="wrong number of arguments"):
        await pipe.transaction([("SET", key, "2"), ("GET",), ("INCR", f"{key}:n")])
    assert await client.mget(key, f"{key}:n") == ["1", "1"]
    # The connection is still in step with the server.
    assert await pipe.execute_command("GET", key) == "1"
    assert pipe._idle and all(isinstance(c, Link) for c in pipe._idle)
    await pipe.aclose()


async def test_a_transaction_on_a_killed_connection_raises_and_the_next_reconnects(
        client: Redis, key_prefix: str) -> None:
    pipe = AutoPipeline(client)
    own_id = await pipe.execute_command("CLIENT", "ID")
    await client.client_kill_filter(_id=own_id)
    with pytest.raises(RedisConnectionError):
        await pipe.transaction([("SET", f"{key_prefix}:k", "v")])
    assert await pipe.transaction([("SET", f"{key_prefix}:k", "w")]) == ["OK"]
    await pipe.aclose()


async def test_a_lone_command_goes_straight_to_a_kept_link(client: Redis,
                                                           key_prefix: str) -> None:
    pipe = AutoPipeline(client)
    await pipe.execute_command("PING")  # opens the link
    (link,) = pipe._idle
    for index in range(5):
        assert await pipe.execute_command("SET", f"{key_prefix}:{index}", index) == "OK"
    # One at a time: the same link every time, back in the idle list after each reply.
    assert pipe._idle == [link] and (pipe.batches, pipe.commands) == (6, 6)
    with pytest.raises(ResponseError, match="WRONGTYPE"):  # an error answer is raised
        await pipe.execute_command("HGET", f"{key_prefix}:0", "f")
    assert pipe._idle == [link]
    await pipe.aclose()


async def test_a_sent_command_runs_before_its_reply_is_awaited(client: Redis,
                                                               key_prefix: str) -> None:
    pipe = AutoPipeline(client)
    await pipe.execute_command("PING")  # opens the link
    (link,) = pipe._idle
    key = f"{key_prefix}:sent"
    pending = pipe.send("SET", key, "v")
    # Another connection sees the value while the reply is still unread.
    assert await eventually(lambda: client.get(key), lambda value: value == "v") == "v"
    assert not pipe._idle  # the link is the pending reply's until it is awaited
    assert await pending == "OK"
    assert pipe._idle == [link]

    # A transaction too: written at once, its replies when awaited.
    started = pipe.start_transaction([("INCR", f"{key}:n"), ("GET", key)])
    assert await eventually(lambda: client.get(f"{key}:n"), lambda n: n == "1") == "1"
    assert await started == [1, "v"]
    assert pipe._idle == [link]
    await pipe.aclose()


async def test_commands_sent_while_one_is_pending_still_get_their_own_replies(
        client: Redis, key_prefix: str) -> None:
    pipe = AutoPipeline(client)
    await pipe.execute_command("PING")
    key = f"{key_prefix}:n"
    pending = pipe.send("INCR", key)
    later = [await pipe.execute_command("INCR", key) for _ in range(3)]  # batched meanwhile
    first = await pending
    assert sorted([first, *later]) == [1, 2, 3, 4]
    await pipe.aclose()


async def test_a_script_the_server_loses_again_after_its_load_is_loaded_again(
        client: Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A server restarted between the SCRIPT LOAD and the EVALSHA (its client retried onto
    # the new one) has forgotten the script again: the call loads it again.
    pipe = AutoPipeline(client)
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    key = f"{key_prefix}:runs"
    await client.script_flush()
    losses = iter([True, True, False])
    load = pipe.script_load

    async def load_then_restart(text: str | bytes) -> str:
        sha = await load(text)
        if next(losses):
            await client.script_flush()
        return sha

    monkeypatch.setattr(pipe, "script_load", load_then_restart)
    assert await pipe.run_script(script, [key], []) == 1  # three loads, one run
    assert await client.get(key) == "1"
    # Known lost (the caller met NOSCRIPT already): loaded before the first call.
    sent = pipe.commands
    losses = iter([False])
    await client.script_flush()
    assert await pipe.run_script(script, [key], [], lost=True) == 2
    assert pipe.commands == sent + 1  # one EVALSHA, not a second NOSCRIPT first

    # A server that forgets it every time: the NOSCRIPT answer after the last load.
    losses = iter([True] * 4)
    await client.script_flush()
    with pytest.raises(NoScriptError):
        await pipe.run_script(script, [key], [])
    assert await client.get(key) == "2"
    await pipe.aclose()


async def test_batches_in_flight_share_one_connection(client: Redis, key_prefix: str) -> None:
    # As ioredis: batches go one behind the other on one socket (Redis answers several
    # per read), not a connection each; the replies stay each caller's own.
    pipe = AutoPipeline(client, max_batch=2)
    await pipe.execute_command("PING")
    key = f"{key_prefix}:n"
    found = await asyncio.gather(*(pipe.execute_command("INCR", key) for _ in range(40)))
    assert sorted(found) == list(range(1, 41))
    assert pipe.batches >= 20  # twenty batches of two and the lone one ...
    assert len(pipe._idle) <= 2  # ... on the link of the lone command and one shared
    await pipe.aclose()


async def test_a_shared_connection_that_fails_fails_every_batch_on_it_once(
        client: Redis, key_prefix: str) -> None:
    pipe = AutoPipeline(client, max_batch=2)
    await pipe.execute_command("PING")
    key = f"{key_prefix}:blocked"
    # A lone command on a link of its own (so the rest go in batches) ...
    held = asyncio.ensure_future(pipe.execute_command("BLPOP", f"{key}:alone", 5))
    await eventually(lambda: asyncio.sleep(0, pipe._inline), lambda n: n == 1)
    # ... and four batches on the shared link, the first stuck behind a blocking command.
    calls = [asyncio.ensure_future(pipe.execute_batch(("BLPOP", key, 5), ("PING",))),
             *(asyncio.ensure_future(pipe.execute_command("PING")) for _ in range(6))]
    shared = await eventually(lambda: asyncio.sleep(0, pipe._shared),
                              lambda link: link is not None and link.batches >= 4)
    assert shared is not None
    shared._transport.close()  # the connection breaks under them
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    assert pipe._shared is None and shared not in pipe._idle  # dropped, once
    assert await pipe.execute_command("SET", f"{key_prefix}:k", "v") == "OK"  # reconnects
    await client.lpush(f"{key}:alone", "x")
    assert await held == [f"{key}:alone", "x"]  # the lone command's link was not touched
    await pipe.aclose()
    assert not client.connection_pool._in_use_connections


async def test_a_kept_connection_the_server_closed_is_not_given_a_batch(
        client: Redis, key_prefix: str) -> None:
    pipe = AutoPipeline(client, max_batch=2)
    await asyncio.gather(*(pipe.execute_command("PING") for _ in range(6)))
    kept = [link for link in pipe._idle if isinstance(link, Link)]
    assert kept
    for link in kept:  # as a restarted server leaves them
        link._transport.close()
    await eventually(lambda: asyncio.sleep(0, all(link.failed for link in kept)), bool)
    pipe._inline += 1  # as while a lone command is out: what follows goes in batches
    try:
        found = await asyncio.gather(*(pipe.execute_command("INCR", f"{key_prefix}:n")
                                       for _ in range(4)))
    finally:
        pipe._inline -= 1
    assert sorted(found) == [1, 2, 3, 4]  # none failed on a closed connection
    assert not any(link in pipe._idle for link in kept)
    await pipe.aclose()
