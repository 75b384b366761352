"""The dedicated queue Redis connection (never the cache's).

One bounded pool serves queue commands (with a socket timeout). Each worker gets a
small pool of its own with *no* socket timeout: BullMQ blocks in ``BZPOPMIN`` for up to
10 s and redis-py 8's default 5 s socket timeout would cut that wait short (a delayed job
then starts seconds late). Every connection has a connect timeout. With
``redis.cluster`` the clients are ``RedisCluster`` s (``queuekit/redis/cluster.py``).
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisClusterException, RedisError

from queuekit.errors import QueueUnavailableError
from queuekit.redis.access import check_key_access, unavailable
from queuekit.redis.cluster import (
    ClusterAutoPipeline,
    FailoverCluster,
    cluster_client,
    name_cluster_client,
)
from queuekit.redis.pipeline import AutoPipeline
from queuekit.settings import RedisSettings

log = logging.getLogger("queuekit.connection")

#: BullMQ refuses servers older than this.
MINIMUM_REDIS_VERSION = (5, 0, 0)


try:  # hiredis is an optional speed-up ("fast" extra)
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - exercised only without hiredis
    _hiredis_pack = None  # type: ignore[assignment]


class FastConnection(Connection):
    """A TCP connection whose commands are serialised by hiredis (C) when it is installed.

    redis-py's asyncio client packs every argument in Python; for BullMQ's scripts (a dozen
    keys and arguments per call) that is a large share of each call's CPU. The bytes sent
    are the same (checked by a test).
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        if _hiredis_pack is None or (isinstance(head, str) and " " in head):
            return super().pack_command(*args)
        try:
            return [_hiredis_pack(args)]
        except TypeError:  # a type hiredis does not take (e.g. memoryview): redis-py's way
            return super().pack_command(*args)


def _connection_class(url: str) -> dict[str, Any]:
    """``connection_class=FastConnection`` for plain TCP URLs (TLS and unix keep theirs)."""
    return {"connection_class": FastConnection} if url.startswith("redis://") else {}


def connection_options(settings: RedisSettings) -> dict[str, Any]:
    """What every pool gets besides the URL: the TLS files and checks (rediss://, through
    redis-py's ``SSLConnection``) and the settings' ACL user and password (the URL's own
    credentials, when it has them, win: redis-py's ``from_url`` parses them last)."""
    options: dict[str, Any] = {}
    if settings.uses_tls:
        options["ssl_cert_reqs"] = settings.ssl_cert_reqs
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            if getattr(settings, name) is not None:
                options[name] = getattr(settings, name)
    if settings.url is not None:  # without url, effective_url carries them already
        if settings.username is not None:
            options["username"] = settings.username
        if settings.password is not None:
            options["password"] = settings.password.get_secret_value()
    return options


@dataclass(frozen=True)
class ServerInfo:
    """What the start-up check learned about the server."""

    version: str
    maxmemory_policy: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        """The version as a tuple of ints, e.g. (7, 0, 15)."""
        return tuple(int(p) for p in self.version.split(".")[:3] if p.isdigit())

    @property
    def bullmq_capabilities(self) -> dict[str, bool]:
        """BullMQ's capability flags for this server.

        ``canDoubleTimeout`` lets the worker block for fractions of a second (Redis >= 6);
        without it bullmq rounds its wait up to whole seconds and retries start late.
        """
        version = self.version_tuple
        return {
            "canBlockFor1Ms": version >= (7, 0, 8),
            "canDoubleTimeout": version >= (6, 0, 0),
        }


class QueueConnection:
    """Pools and clients for one queue Redis server; ``close()`` releases all of them."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.url = settings.safe_url
        self._common: dict[str, Any] = {
            **_connection_class(settings.effective_url),
            **connection_options(settings),
            "socket_connect_timeout": settings.connect_timeout,
            "decode_responses": True,  # bullmq reads str fields; bytes give name=None
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        }
        self._worker_pools: list[ConnectionPool] = []
        self._worker_clusters: list[Redis] = []  # cluster mode: whole clients, not pools
        self._server: ServerInfo | None = None
        self._check_lock = asyncio.Lock()
        self.closed = False
        self.cluster = settings.cluster
        if self.cluster:  # RedisCluster clients: one pool per node inside each
            self._open_cluster()
            return
        self._pool: BlockingConnectionPool = BlockingConnectionPool.from_url(
            settings.effective_url,
            max_connections=settings.pool_size,
            timeout=settings.socket_timeout,
            socket_timeout=settings.socket_timeout,
            **self._common,
        )
        self.client: Redis = Redis(connection_pool=self._pool)
        # For auto-pipelined batches: no per-read socket timeout (redis-py would enter a
        # timeout context per reply); AutoPipeline bounds each whole batch instead.
        self._batch_pool = ConnectionPool.from_url(
            settings.effective_url, max_connections=settings.pool_size * 4,
            socket_timeout=None, **self._common)
        self.batch_client: Redis = Redis(connection_pool=self._batch_pool)

    def _open_cluster(self) -> None:
        # Typed as Redis: RedisCluster offers the same commands (bullmq takes either).
        connections = max(100, self.settings.pool_size * 4)  # per node; redis-py raises
        self.client = cluster_client(self.settings, self._common,  # type: ignore[assignment]
                                     self.settings.socket_timeout, connections)
        self.batch_client = cluster_client(  # type: ignore[assignment]
            self.settings, self._common, None, connections)

    @property
    def server(self) -> ServerInfo | None:
        """What the last successful :meth:`check` found, or None."""
        return self._server

    def worker_client(self) -> Redis:
        """A client on a new pool without socket timeout, for one worker's blocking wait."""
        if self.cluster:
            client: Redis = cluster_client(  # type: ignore[assignment]
                self.settings, self._common, None, 100)
            self._worker_clusters.append(client)
            return client
        pool = ConnectionPool.from_url(self.settings.effective_url, socket_timeout=None,
                                       **self._common)
        self._worker_pools.append(pool)
        return Redis(connection_pool=pool)

    async def release_worker_client(self, client: Redis) -> None:
        """Disconnect a client made by :meth:`worker_client` and forget its pool."""
        if self.cluster:
            await client.aclose()
            if client in self._worker_clusters:
                self._worker_clusters.remove(client)
            return
        pool = client.connection_pool
        await client.aclose()
        await pool.disconnect()
        if pool in self._worker_pools:
            self._worker_pools.remove(pool)

    def auto_pipeline(self, max_batch: int, timeout: float | None = None,
                      client: Redis | None = None) -> AutoPipeline:
        """An :class:`AutoPipeline` on ``client`` (default: the batch client), per node
        on a cluster."""
        client = self.batch_client if client is None else client
        if isinstance(client, FailoverCluster):
            return ClusterAutoPipeline(client, max_batch=max_batch, timeout=timeout)
        return AutoPipeline(client, max_batch=max_batch, timeout=timeout)

    def name_client(self, client: Redis, name: str) -> None:
        """Give every connection ``client`` opens the client name ``name``."""
        if isinstance(client, RedisCluster):
            name_cluster_client(client, name)
        else:
            client.connection_pool.connection_kwargs["client_name"] = name

    async def _info(self) -> dict[str, Any]:
        if not isinstance(self.client, RedisCluster):
            return dict(await self.client.info())
        # Every primary must answer; the oldest version and any policy not noeviction win.
        await self.client.initialize()
        infos = [await self.client.execute_command("INFO", target_nodes=node)
                 for node in self.client.get_primaries()]
        infos.sort(key=lambda info: ServerInfo(str(info.get("redis_version", "0")),
                                               "").version_tuple)
        bad = [info for info in infos if info.get("maxmemory_policy") != "noeviction"]
        return dict((bad or infos)[0] | {"redis_version": infos[0].get("redis_version")})

    async def server_info(self) -> ServerInfo:
        """The server's info, checking the connection first if not done yet."""
        if self._server is None:
            async with self._check_lock:
                if self._server is None:
                    await self.check()
        assert self._server is not None
        return self._server

    async def check(self) -> ServerInfo:
        """Ping the server within ``startup_timeout`` and read its version and policy.

        Raises :class:`QueueUnavailableError` naming the URL (password masked) and what
        failed (connection, TLS certificate, authentication, permission: see
        :mod:`queuekit.redis.access`) instead of leaving BullMQ to retry for minutes.
        """
        timeout = self.settings.startup_timeout
        try:
            async with asyncio.timeout(timeout):
                info: dict[str, Any] = await self._info()
                await check_key_access(self.client, self.settings, self.url)
        except TimeoutError:
            raise QueueUnavailableError(
                f"Redis at {self.url} did not answer within {timeout:g} s; check the host, "
                "port and firewall (setting redis.url / QUEUEKIT_REDIS__URL)"
            ) from None
        except (RedisError, RedisClusterException, OSError) as exc:
            raise unavailable(exc, self.settings, self.url) from None
        server = ServerInfo(
            version=str(info.get("redis_version", "0.0.0")),
            maxmemory_policy=str(info.get("maxmemory_policy", "unknown")),
        )
        if server.version_tuple < MINIMUM_REDIS_VERSION:
            raise QueueUnavailableError(
                f"Redis at {self.url} is version {server.version}; BullMQ needs 5.0.0 or newer"
            )
        if server.maxmemory_policy != "noeviction":
            message = (
                f"Redis at {self.url} has maxmemory-policy {server.maxmemory_policy!r}; "
                "BullMQ needs 'noeviction' or jobs may be evicted"
            )
            log.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        self._server = server
        log.info("connected to Redis %s at %s", server.version, self.url)
        return server

    def apply_to(self, bull_connection: Any) -> None:
        """Give a bullmq ``RedisConnection`` our server facts so it skips its own INFO."""
        if self._server is not None:
            bull_connection.version = self._server.version
            bull_connection.capabilities = dict(self._server.bullmq_capabilities)

    async def ping(self) -> str:
        """``ok`` when the server answers a PING, else the reason."""
        try:
            async with asyncio.timeout(self.settings.startup_timeout):
                await self.client.ping()
        except TimeoutError:
            return f"no answer from {self.url} within {self.settings.startup_timeout:g} s"
        except (RedisError, RedisClusterException, OSError) as exc:
            return f"{self.url}: {exc}"
        return "ok"

    async def close(self) -> None:
        """Disconnect every pool. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for pool in list(self._worker_pools):
            await pool.disconnect()
        self._worker_pools.clear()
        for client in list(self._worker_clusters):
            await client.aclose()
        self._worker_clusters.clear()
        await self.client.aclose()
        await self.batch_client.aclose()
        if not self.cluster:
            await self._pool.disconnect()
            await self._batch_pool.disconnect()
        log.info("queue Redis connection to %s closed", self.url)
