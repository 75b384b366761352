"""queuekit's hot-path script calls send exactly what bullmq's own code sends."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import bullmq
import pytest
from bullmq.job import Job
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from queuekit.redis.commands import AddJobCommand, CompleteJobCommand
from queuekit.redis.connection import FastConnection
from queuekit.redis.pipeline import AutoPipeline
from queuekit.redis.wire import bullmq_job_opts, keep_jobs

OPTS = {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000},
        "removeOnComplete": {"count": 100, "age": 86400}, "removeOnFail": {"count": 500}}


class Capture:
    """Stands in for a client: records the EVALSHA bullmq would send."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        self.calls.append((sha, numkeys, *args))
        return "1"


def queue() -> Any:
    client = Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True)  # never used
    return bullmq.Queue("orders", {"connection": client, "prefix": "queue"})


@pytest.mark.parametrize("extra", [{}, {"delay": 1500}, {"priority": 4}, {"jobId": "abc"},
                                   {"lifo": True, "backoff": 250}])
async def test_add_job_matches_bullmq(extra: dict[str, Any]) -> None:
    bull_queue = queue()
    opts = {**OPTS, **extra}
    data = {"userId": "u1", "accountId": "a1", "syncType": "full"}
    job = Job(bull_queue, "sync", data, opts)
    capture = Capture()
    await bull_queue.scripts.addJob(job, capture)
    command = AddJobCommand(bull_queue, AutoPipeline(bull_queue.client))
    name, keys, args = command.build("sync", data, opts, timestamp=job.timestamp)
    script = bull_queue.scripts.commands[name]
    sha, numkeys, *rest = capture.calls[0]
    assert (sha, numkeys) == (script.sha, len(keys))
    assert rest[:numkeys] == keys
    ours, theirs = args, rest[numkeys:]
    assert ours[0] == theirs[0]  # msgpacked [prefix, id, name, timestamp, parent ...]
    assert json.loads(ours[1]) == json.loads(theirs[1])
    import msgpack

    assert msgpack.unpackb(ours[2]) == msgpack.unpackb(theirs[2])
    assert ours[3:] == theirs[3:]
    # The packed options are kept for the last options object only: another object (even
    # an equal one) is packed anew, and going back packs the first again.
    other = {**opts, "attempts": 9}
    for given in (other, opts, dict(opts), other):
        packed = command.build("sync", data, given, timestamp=job.timestamp)[2][2]
        assert msgpack.unpackb(packed) == bullmq_job_opts(given)


@pytest.mark.parametrize("timestamp", [1_764_000_000_000, 1 << 32, (1 << 32) - 1, 7])
@pytest.mark.parametrize("extra", [{}, {"jobId": "abc"},
                                   {"de": {"id": "d1"}}])
def test_packed_script_args_are_msgpack_of_bullmq_list(timestamp: int,
                                                       extra: dict[str, Any]) -> None:
    import msgpack

    command = AddJobCommand(queue(), AutoPipeline(queue().client))
    prefix = queue().scripts.keys[""]
    for name in ("sync", "sync-transactions", "é" * 40, "sync"):
        packed = command.build(name, {}, {**OPTS, **extra}, timestamp=timestamp)[2][0]
        dedup = f"{prefix}de:d1" if extra.get("de") else None
        assert packed == msgpack.packb(
            [prefix, extra.get("jobId", ""), name, timestamp, None, None, None, None, dedup],
            use_bin_type=True)


@pytest.mark.parametrize("value", [
    {"userId": "u1", "n": 1.5, "big": 1e16, "flag": True, "none": None},
    None, "é\"quoted\"\n", 3, [1, {"a": ["日本", -0.0]}], {}, [],
])
def test_compact_json_is_json_dumps(value: Any) -> None:
    from queuekit.redis.commands import _dumps

    assert _dumps(value) == json.dumps(value, separators=(",", ":"), allow_nan=False)


def test_compact_json_refuses_what_json_dumps_refuses() -> None:
    from queuekit.redis.commands import _dumps

    with pytest.raises(ValueError, match="Out of range float"):
        _dumps({"x": float("nan")})
    with pytest.raises(TypeError, match="not JSON serializable"):
        _dumps({"x": object()})


def test_packed_name_heads_stay_bounded() -> None:
    command = AddJobCommand(queue(), AutoPipeline(queue().client))
    for index in range(1000):
        command.build(f"job-{index}", {}, OPTS, timestamp=1_764_000_000_000)
    assert 0 < len(command._heads) <= 256


def test_job_opts_and_keep_jobs_follow_bullmq() -> None:
    assert bullmq_job_opts({"backoff": 5}) == {"attempts": 0, "delay": 0,
                                                "backoff": {"type": "fixed", "delay": 5}}
    assert bullmq_job_opts({"attempts": 2})["backoff"] is None
    assert keep_jobs(True) == {"count": 0}
    assert keep_jobs(False) == {"count": -1}
    assert keep_jobs(None) == {"count": -1}
    assert keep_jobs(7) == {"count": 7}
    assert keep_jobs({"age": 5}) == {"age": 5}


@pytest.mark.parametrize("remove", [True, False, 10, {"count": 100, "age": 86400}])
async def test_complete_job_matches_bullmq(monkeypatch: pytest.MonkeyPatch,
                                           remove: object) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.123)
    bull_queue = queue()
    bull_queue.opts = {"lockDuration": 30_000, "prefix": "queue"}
    raw = {"name": "sync", "data": "{}", "opts": json.dumps({**OPTS, "removeOnComplete": remove}),
           "atm": "2", "timestamp": "1"}
    job = Job.fromJSON(bull_queue, raw, "42")
    keys, args = bull_queue.scripts.moveToCompletedArgs(job, {"success": True}, remove,
                                                        "tok:1", True)
    command = CompleteJobCommand(bull_queue.scripts, 30_000)
    ours_keys, ours_args = command.build(
        "42", job.attempts, job.attemptsMade, keep_jobs(remove), "tok:1", {"success": True},
        True)
    import msgpack

    assert ours_keys == keys
    assert ours_args[:-1] == args[:-1]
    assert msgpack.unpackb(ours_args[-1]) == msgpack.unpackb(args[-1])
    # The options map, with its entries after the token packed once, is msgpack's own
    # packing of the whole map, for this token and the next.
    for token in ("tok:1", "x" * 40, "tok:2"):
        packed = command.build("42", job.attempts, job.attemptsMade, keep_jobs(remove),
                               token, None, False)[1][-1]
        assert packed == msgpack.packb({"token": token, **command._options_after_token(
            keep_jobs(remove), job.attempts, job.attemptsMade)}, use_bin_type=True)
    unhashable = {"count": 5, "age": [1]}  # packed every time, still right
    packed = command.build("42", 1, 0, unhashable, "t", None, False)[1][-1]
    assert msgpack.unpackb(packed)["keepJobs"] == unhashable



def test_fast_connection_packs_like_redis_py() -> None:
    fast, plain = FastConnection(), Connection()
    for args in [("SET", "k", 1.5, 2, b"x", "é"), ("CONFIG GET", "maxmemory"),
                 ("EVALSHA", "abc", 1, "k", memoryview(b"mv"))]:
        assert b"".join(fast.pack_command(*args)) == b"".join(plain.pack_command(*args))


class FakeConnection:
    """A connection whose replies are scripted: a value, an error, or a broken transport."""

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.sent: list[Any] = []
        self.disconnected = False

    def pack_commands(self, commands: list[Any]) -> list[Any]:
        return list(commands)

    async def send_packed_command(self, packed: list[Any], check_health: bool = True) -> None:
        self.sent.extend(packed)

    async def read_response(self) -> Any:
        await asyncio.sleep(0)  # as on a socket: the reply arrives after the loop turns
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def disconnect(self) -> None:
        self.disconnected = True


class FakePool:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection
        self.released: list[Any] = []

    async def get_connection(self) -> FakeConnection:
        return self.connection

    async def release(self, connection: Any) -> None:
        self.released.append(connection)


class FakeClient:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection_pool = FakePool(connection)


async def test_pipeline_batches_and_keeps_errors_per_command() -> None:
    from redis.exceptions import ResponseError

    connection = FakeConnection(["a", ResponseError("ERR bad"), "c"])
    pipe = AutoPipeline(FakeClient(connection))  # type: ignore[arg-type]
    results = await asyncio.gather(pipe.execute_command("GET", "a"),
                                   pipe.execute_command("GET", "b"),
                                   pipe.execute_command("GET", "c"), return_exceptions=True)
    assert results[0] == "a"
    assert isinstance(results[1], ResponseError)
    assert results[2] == "c"
    assert (pipe.batches, pipe.commands) == (2, 3)  # the first goes at once, two batch
    assert len(connection.sent) == 3
    await pipe.aclose()
    assert pipe._idle == []


async def test_pipeline_transport_error_reaches_every_caller() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    connection = FakeConnection(["a", RedisConnectionError("gone")])
    client = FakeClient(connection)
    pipe = AutoPipeline(client, max_batch=3)  # type: ignore[arg-type]
    results = await asyncio.gather(*(pipe.execute_command("GET", k) for k in "abc"),
                                   return_exceptions=True)
    assert results[0] == "a"
    assert all(isinstance(r, RedisConnectionError) for r in results[1:])
    assert connection.disconnected
    assert client.connection_pool.released == [connection]


async def test_a_batch_goes_out_in_one_write_with_errors_as_replies() -> None:
    from redis.exceptions import ResponseError

    connection = FakeConnection(["state", ResponseError("NOSCRIPT"), "x"])
    pipe = AutoPipeline(FakeClient(connection))  # type: ignore[arg-type]
    first, second = await asyncio.gather(
        pipe.execute_batch(("EVALSHA", "s", 0), ("HGETALL", "k")),
        pipe.execute_batch(("GET", "x")))
    assert first[0] == "state" and isinstance(first[1], ResponseError)
    assert second == ["x"]
    # The first batch went inline in one write; the second waited for the next batch.
    assert (pipe.batches, pipe.commands) == (2, 3)


async def test_a_batch_raises_a_transport_error() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    connection = FakeConnection([RedisConnectionError("gone")])
    pipe = AutoPipeline(FakeClient(connection))  # type: ignore[arg-type]
    with pytest.raises(RedisConnectionError):
        await pipe.execute_batch(("GET", "a"), ("GET", "b"))
