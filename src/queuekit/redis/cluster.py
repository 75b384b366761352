"""Redis Cluster clients (``redis.cluster: true``).

redis-py's :class:`RedisCluster` routes each command by the slot of its keys and follows
``MOVED`` / ``ASK`` redirections itself. What it does not do is wait out a master
failover: between a master's death and its replica's promotion (about the servers'
``cluster-node-timeout``) every command on that master's slots fails. :class:`FailoverCluster`
retries those commands for ``redis.cluster_failover_wait`` seconds, so producers and
workers pause through a failover instead of failing (and opening the circuit breaker).

A retried script call may have run once already when the reply was lost (the master
died after applying it): an add without ``job_id`` can then exist twice, as with any
at-least-once system.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from redis.asyncio.cluster import ClusterNode, ClusterPipeline, ClusterPubSub, RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    MasterDownError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queuekit.redis.pipeline import AutoPipeline, Pending
from queuekit.settings import RedisSettings

log = logging.getLogger("queuekit.cluster")

#: What a command can meet while a master fails over (or its slots move).
FAILOVER_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, TimeoutError, ClusterDownError,
    MasterDownError, TryAgainError, SlotNotCoveredError,
)
_RETRIED: tuple[type[BaseException], ...] = (*FAILOVER_ERRORS, ClusterError)
#: Pause between two attempts while the cluster elects a new master.
_RETRY_PAUSE = 0.2

T = TypeVar("T")


async def through_failover(call: Callable[[], Awaitable[T]], wait: float) -> T:
    """``call()``, retried on failover errors until ``wait`` seconds have passed."""
    deadline: float | None = None
    while True:
        try:
            return await call()
        except _RETRIED as exc:
            if not isinstance(exc, FAILOVER_ERRORS) and not _redirected_too_often(exc):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + wait
                log.warning("Redis Cluster unavailable (%r); retrying for up to %g s",
                            exc, wait)
            if now >= deadline:
                raise
            await asyncio.sleep(_RETRY_PAUSE)


def _redirected_too_often(exc: BaseException) -> bool:
    """redis-py's "TTL exhausted": the command met MOVED/ASK redirections until it gave up
    (its slot migrating under load) and did not run; worth another try, as a failover."""
    return "TTL exhausted" in str(exc)


class FailoverCluster(RedisCluster):
    """A :class:`RedisCluster` whose commands wait out a master failover, and whose
    pipelines accept Lua script calls (see :class:`ScriptPipeline`)."""

    failover_wait: float = 5.0

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Run one command (see :class:`RedisCluster`), retried through a failover."""
        execute = super().execute_command
        return await through_failover(lambda: execute(*args, **kwargs), self.failover_wait)

    def register_script(self, script: Any) -> Any:
        """redis-py's script object; its source is kept for :class:`ScriptPipeline`."""
        registered = super().register_script(script)
        scripts: dict[str, Any] = self.__dict__.setdefault("_qk_scripts", {})
        scripts[registered.sha] = registered.script
        return registered

    def pubsub(self, node: ClusterNode | None = None, host: str | None = None,
               port: int | None = None, **kwargs: Any) -> ClusterPubSub:
        """A (classic) pub/sub connection; PUBLISH reaches every node, so any node does."""
        return _ReadyPubSub(self, node=node, host=host, port=port, **kwargs)

    def pipeline(self, transaction: Any | None = None,
                 shard_hint: Any | None = None) -> ClusterPipeline:
        """A pipeline (a MULTI/EXEC with ``transaction=True``) that takes ``evalsha``."""
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # redis-py refuses it
        return ScriptPipeline(self, transaction)  # type: ignore[abstract]


class _ReadyPubSub(ClusterPubSub):
    """redis-py's cluster pub/sub, which picks its node from the slot map: on a client
    that has sent nothing yet that map is empty (a ``KeyError``), so fill it first."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.cluster.initialize()
        return await super().execute_command(*args, **kwargs)


class _Queued:
    """What :meth:`ScriptPipeline.evalsha` returns: awaiting it gives the pipeline."""

    def __init__(self, pipe: ClusterPipeline) -> None:
        self._pipe = pipe

    def __await__(self) -> Generator[Any, None, ClusterPipeline]:
        return self._result().__await__()

    async def _result(self) -> ClusterPipeline:
        return self._pipe


class ScriptPipeline(ClusterPipeline):
    """redis-py's cluster pipeline with ``EVALSHA`` allowed.

    redis-py blocks ``evalsha`` in cluster pipelines, which is how its ``Script`` objects
    (and so bullmq's ``Queue.addBulk`` and ``FlowProducer``) queue a script call. Every
    key of one call is in one slot (hash-tagged prefixes), so it is routed like any
    command; the scripts used are loaded on every primary first, as redis-py does for a
    single server's pipeline, because a ``NOSCRIPT`` inside MULTI/EXEC would fail one
    call of the transaction while the others went through.
    """

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        """Queue one script call (awaiting the result is optional, as for any command)."""
        self.__dict__.setdefault("_qk_shas", set()).add(sha)
        queued = self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)
        if asyncio.iscoroutine(queued):  # WATCHing, before MULTI: it runs at once
            return queued
        # Not the pipeline itself: awaiting a ClusterPipeline re-initialises it, which
        # empties its queue (redis-py's Script awaits what evalsha returns).
        return _Queued(self)

    def _split_command_across_slots(self, command: str, *keys: Any) -> Any:
        # redis-py splits EXISTS/DEL/UNLINK/TOUCH per slot and drops the reply of each part
        # while WATCHing (an un-awaited coroutine: ``await pipe.exists(key)`` returned the
        # pipeline). Keys of one slot need no split: one command, its reply returned.
        if len({self.cluster_client.keyslot(key) for key in keys}) == 1:
            return self.execute_command(command, *keys)
        return super()._split_command_across_slots(command, *keys)

    async def execute(self, raise_on_error: bool = True,
                      allow_redirections: bool = True) -> list[Any]:
        """Load the scripts used, then run the pipeline."""
        shas: set[str] = self.__dict__.pop("_qk_shas", set())
        known: dict[str, Any] = self.cluster_client.__dict__.get("_qk_scripts", {})
        for sha in shas:
            if sha in known:
                await self.cluster_client.script_load(known[sha])
        return list(await super().execute(raise_on_error, allow_redirections))


def seed_nodes(settings: RedisSettings) -> list[ClusterNode]:
    """The seed nodes of ``redis.cluster_nodes`` (``host:port`` or URLs)."""
    nodes = []
    for text in settings.cluster_nodes:
        parts = urlsplit(text if "://" in text else f"redis://{text}")
        nodes.append(ClusterNode(parts.hostname or "127.0.0.1", parts.port or 6379))
    return nodes


def cluster_client(settings: RedisSettings, common: dict[str, Any],
                   socket_timeout: float | None, max_connections: int) -> FailoverCluster:
    """A cluster client from ``redis.url`` (any node) and the extra seed nodes."""
    options = {key: value for key, value in common.items() if key != "connection_class"}
    client: FailoverCluster = FailoverCluster.from_url(  # type: ignore[assignment]
        settings.effective_url, startup_nodes=seed_nodes(settings) or None,
        socket_timeout=socket_timeout, max_connections=max_connections, **options)
    client.failover_wait = settings.cluster_failover_wait
    return client


def name_cluster_client(client: RedisCluster, name: str) -> None:
    """Give every connection of ``client`` (present nodes and later ones) a client name."""
    client.nodes_manager.connection_kwargs["client_name"] = name
    client.connection_kwargs["client_name"] = name
    for node in client.get_nodes():
        node.connection_kwargs["client_name"] = name


class ClusterAutoPipeline(AutoPipeline):
    """:class:`AutoPipeline` over a cluster: each batch is split per node.

    redis-py's ``ClusterPipeline`` groups the batch's commands by the node of their slot,
    sends one pipeline per node and follows redirections; every script call's keys are in
    one slot (see ``keys.cluster_prefix``). Per-command errors go to their callers.
    """

    def __init__(self, client: FailoverCluster, max_batch: int = 64,
                 timeout: float | None = None) -> None:
        super().__init__(client, max_batch=max_batch, timeout=timeout)  # type: ignore[arg-type]
        self._cluster = client

    #: A transaction goes to its slot's node through redis-py's cluster pipeline instead.
    transactions = False

    async def script_load(self, script: str | bytes) -> str:
        """``SCRIPT LOAD`` on every primary (a promoted replica may lack the script)."""
        return str(await self._cluster.script_load(script))

    async def _run(self, batch: Pending) -> list[Any]:
        async with asyncio.timeout(self._timeout):
            pipe = self._cluster.pipeline(transaction=False)
            for args, _ in batch:
                pipe.execute_command(*args)
            return list(await pipe.execute(raise_on_error=False))

    async def _replies(self, batch: Pending) -> list[Any]:
        """Every command's reply or error; commands that met a failover are sent again
        (only those: the others ran) until ``failover_wait`` has passed."""
        replies: list[Any] = [None] * len(batch)
        todo = list(range(len(batch)))
        deadline: float | None = None
        while True:
            try:
                got = await self._run([batch[i] for i in todo])
            except FAILOVER_ERRORS as exc:
                got = [exc] * len(todo)
            again = []
            for index, reply in zip(todo, got, strict=True):
                replies[index] = reply
                if isinstance(reply, FAILOVER_ERRORS):
                    again.append(index)
            if not again:
                return replies
            now = time.monotonic()
            if deadline is None:
                deadline = now + self._cluster.failover_wait
                log.warning("Redis Cluster unavailable (%r); retrying for up to %g s",
                            replies[again[0]], self._cluster.failover_wait)
            if now >= deadline:
                return replies
            todo = again
            # With raise_on_error=False redis-py leaves the slot map as it was: reset it,
            # as its own ClusterPipeline does on these errors, so the next try asks the
            # cluster who the masters are now.
            await self._cluster.aclose()
            await asyncio.sleep(_RETRY_PAUSE)

    async def aclose(self) -> None:
        """Wait for batches in flight (connections belong to the cluster client)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
