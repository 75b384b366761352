"""Typed configuration: defaults < ``config.yaml`` < ``.env`` < ``QUEUEKIT_*`` environment.

Nested fields are set from the environment with ``__``:
``QUEUEKIT_REDIS__URL=redis://127.0.0.1:6390/0``, ``QUEUEKIT_WORKER__CONCURRENCY=10``.
The YAML file is ``$QUEUEKIT_CONFIG`` when set, else ``config.yaml`` in the working
directory, else the project's own ``config.yaml``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from queuekit.errors import ConfigurationError

CONFIG_ENV_VAR = "QUEUEKIT_CONFIG"
_PROJECT_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"

DEFAULT_SENSITIVE_KEYS: tuple[str, ...] = (
    "token",
    "password",
    "secret",
    "api_key",
    "authorization",
    "access_token",
    "refresh_token",
    "private_key",
)


#: Where plain-def processors run (``worker.sync_pool``).
SyncPoolKind = Literal["thread", "process"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedisSettings(_Section):
    """The dedicated queue Redis server (never the cache's)."""

    url: str | None = Field(
        default=None,
        description="redis:// or rediss:// URL; when set it wins over host/port/db/tls (and "
        "over username/password when it has credentials of its own).",
    )
    host: str = Field(default="127.0.0.1", description="Server host when no url is given.")
    port: int = Field(default=6379, ge=1, le=65535, description="Server port.")
    db: int = Field(default=0, ge=0, description="Database number.")
    username: str | None = Field(default=None, description="ACL user name.")
    password: SecretStr | None = Field(default=None, description="Password; never logged.")
    tls: bool = Field(default=False, description="Connect with TLS (rediss://).")
    ssl_ca_certs: str | None = Field(
        default=None, description="TLS: file of the CA certificates that signed the server's "
        "certificate (default: the system's CAs).")
    ssl_certfile: str | None = Field(
        default=None, description="TLS: client certificate file, for servers that require one.")
    ssl_keyfile: str | None = Field(default=None, description="TLS: the client certificate's key.")
    ssl_cert_reqs: Literal["required", "optional", "none"] = Field(
        default="required", description="TLS: verify the server's certificate (required), "
        "only when it sends one (optional) or never (none: no protection against a "
        "man in the middle).")
    prefix: str = Field(
        default="queue", min_length=1, description="Key prefix of every BullMQ key."
    )
    pool_size: int = Field(default=20, ge=1, description="Connections in the command pool.")
    connect_timeout: float = Field(
        default=2.0, gt=0, description="Seconds to open one connection."
    )
    socket_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a non-blocking command may take; worker connections have none.",
    )
    startup_timeout: float = Field(
        default=2.5, gt=0, description="Seconds the start-up check may take before failing."
    )
    cluster: bool = Field(
        default=False,
        description="Redis Cluster: url names any node; every queue's keys share a hash slot.",
    )
    cluster_nodes: list[str] = Field(
        default_factory=list,
        description="More cluster seed nodes as host:port (or redis:// URLs), besides url.",
    )
    cluster_slots: Literal["queue", "shared"] = Field(
        default="queue",
        description="Cluster only. queue: each queue its own slot (prefix {<prefix>:<queue>}, "
        "queues spread over shards); shared: all queues in one slot (prefix {<prefix>}, "
        "needed by flows across queues). A prefix that already has {braces} is used as is.",
    )
    cluster_failover_wait: float = Field(
        default=5.0, ge=0,
        description="Cluster only: seconds a command keeps retrying while a master fails over.",
    )

    @model_validator(mode="after")
    def _check_url(self) -> RedisSettings:
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("redis", "rediss", "unix"):
                raise ValueError(
                    f"url must start with redis://, rediss:// or unix://, got {self.safe_url!r}"
                )
        files = {"ssl_ca_certs": self.ssl_ca_certs, "ssl_certfile": self.ssl_certfile,
                 "ssl_keyfile": self.ssl_keyfile}
        named = [name for name, path in files.items() if path is not None]
        if named and not self.uses_tls:
            raise ValueError(f"{', '.join(named)} set, but {self.safe_url} is not TLS: use a "
                             "rediss:// url (or tls: true)")
        for name in named:
            if not Path(str(files[name])).is_file():
                raise ValueError(f"{name}: no such file {files[name]!r}")
        if (self.ssl_keyfile is None) != (self.ssl_certfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together: set both or neither")
        if self.cluster:
            parts = urlsplit(self.effective_url)
            if parts.scheme == "unix":
                raise ValueError("cluster is true: Redis Cluster needs a redis:// or rediss:// url")
            if parts.path.strip("/") not in ("", "0") or (self.url is None and self.db):
                raise ValueError("cluster is true: Redis Cluster has only database 0 (url, db)")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A password in the url never shows in a repr (or a log line of these settings).
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name == "url" and isinstance(value, str) else value

    @property
    def uses_tls(self) -> bool:
        """Whether connections are made with TLS (a rediss:// url, or ``tls`` without url)."""
        return self.effective_url.startswith("rediss://")

    @property
    def effective_url(self) -> str:
        """The URL to connect to, with the password in it (never log this)."""
        if self.url is not None:
            return self.url
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.password is not None:
            user = quote(self.username or "", safe="")
            auth = f"{user}:{quote(self.password.get_secret_value(), safe='')}@"
        elif self.username:
            auth = f"{quote(self.username, safe='')}@"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"

    @property
    def safe_url(self) -> str:
        """The URL with any password replaced by ``***``: safe for logs and errors."""
        return mask_url(self.url if self.url is not None else self.effective_url)


def mask_url(url: str) -> str:
    """Return ``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))


class KeepJobs(_Section):
    """Retention of finished jobs, as BullMQ's ``KeepJobs``: the last ``count``, for ``age`` s."""

    count: int | None = Field(default=None, ge=0, description="Keep at most this many.")
    age: int | None = Field(default=None, ge=0, description="Keep for at most this many s.")

    def to_bullmq(self) -> dict[str, int]:
        """The BullMQ wire form (only the fields that are set)."""
        return {k: v for k, v in (("count", self.count), ("age", self.age)) if v is not None}


class BackoffSettings(_Section):
    """Retry delay: ``exponential`` waits delay, 2*delay, 4*delay ...; ``fixed`` waits delay."""

    type: Literal["exponential", "fixed"] = "exponential"
    delay: int = Field(default=1000, ge=0, description="Base delay in milliseconds.")


class JobDefaults(_Section):
    """Default options of every job (the NestJS original's ``DEFAULT_JOB_OPTIONS``)."""

    attempts: int = Field(default=3, ge=1, description="Attempts before a job fails.")
    backoff: BackoffSettings = BackoffSettings()
    remove_on_complete: KeepJobs = KeepJobs(count=100, age=24 * 3600)
    remove_on_fail: KeepJobs = KeepJobs(count=500)


class WorkerLimiter(_Section):
    """BullMQ's worker ``limiter``: at most ``max`` jobs start per ``duration`` ms on the
    queue, counted in Redis across every worker process."""

    max: int = Field(ge=1, description="Jobs that may start per window.")
    duration: int = Field(ge=1, description="Window in milliseconds.")


class WorkerSettings(_Section):
    """How workers run."""

    concurrency: int = Field(default=5, ge=1, description="Jobs processed at once per queue.")
    queue_concurrency: dict[str, int] = Field(
        default_factory=dict, description="Per-queue concurrency, overriding `concurrency`."
    )
    lock_duration: int = Field(
        default=30_000, ge=1000, description="Milliseconds a job's lock lasts before renewal."
    )
    stalled_interval: int = Field(
        default=30_000, ge=500, description="Milliseconds between stalled-job checks."
    )
    max_stalled_count: int = Field(
        default=1, ge=0, description="Times a job may stall before it fails."
    )
    shutdown_timeout: float = Field(
        default=30.0, gt=0, description="Seconds close() waits for active jobs, then forces."
    )
    drain_delay: float = Field(
        default=5.0, gt=0, description="Seconds an idle worker blocks waiting for a job."
    )
    run_retry_delay: int = Field(
        default=1000,
        ge=50,
        description="Milliseconds a worker waits before fetching again after a Redis "
        "connection error (bullmq's runRetryDelay, 15000 there: 15 s idle after an outage).",
    )
    engine: Literal["fast", "bullmq"] = Field(
        default="fast",
        description="fast: queuekit's loop over BullMQ's scripts (one call per job); "
        "bullmq: the bullmq package's Worker.",
    )
    sync_pool: SyncPoolKind = Field(
        default="thread",
        description="Where a plain-def processor runs, off the event loop: thread (a pool of "
        "`concurrency` threads per queue) or process (a pool of processes per queue; the "
        "processor, its payload and result must pickle).",
    )
    queue_sync_pool: dict[str, SyncPoolKind] = Field(
        default_factory=dict, description="Per-queue sync_pool, overriding `sync_pool`."
    )
    enabled: bool = Field(default=True, description="Run workers in this process at all.")
    queues: list[str] | None = Field(
        default=None, description="Queues that run workers here; None means all."
    )
    limiter: dict[str, WorkerLimiter] = Field(
        default_factory=dict, description="Per-queue limit of job starts (BullMQ's limiter)."
    )

    def concurrency_for(self, queue: str) -> int:
        """The concurrency configured for ``queue``."""
        return self.queue_concurrency.get(queue, self.concurrency)

    def sync_pool_for(self, queue: str) -> SyncPoolKind:
        """The pool a plain-def processor of ``queue`` runs in."""
        return self.queue_sync_pool.get(queue, self.sync_pool)


class BreakerSettings(_Section):
    """The circuit breaker in front of Redis."""

    fail_max: int = Field(default=5, ge=1, description="Failures in a row that open it.")
    reset_timeout: float = Field(
        default=30.0, gt=0, description="Seconds it stays open before one trial call."
    )


class RateLimit(_Section):
    """At most ``max`` additions per user in ``duration`` milliseconds."""

    max: int = Field(ge=1)
    duration: int = Field(default=1000, ge=1, description="Window in milliseconds.")


class SecuritySettings(_Section):
    """What payloads may not carry, and how fast one user may add jobs."""

    sensitive_keys: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SENSITIVE_KEYS),
        description="Payload keys refused at any depth, in any case or separator style.",
    )
    rate_limits: dict[str, RateLimit] = Field(
        default_factory=dict, description="Per-queue limit of additions per user."
    )


class ScheduleSettings(_Section):
    """A job scheduler declared in configuration, upserted when the host starts.

    Exactly one of ``every`` (ms) or ``pattern`` (cron; six fields have seconds first),
    evaluated in ``tz`` (UTC when unset). ``data`` and ``options`` are the template of
    every run, validated against the queue's payload model at start-up.
    """

    queue: str = Field(min_length=1, description="The queue the runs are added to.")
    every: int | None = Field(default=None, ge=1, description="Milliseconds between runs.")
    pattern: str | None = Field(default=None, description="A cron expression.")
    tz: str | None = Field(default=None, description="IANA time zone of the pattern.")
    name: str | None = Field(default=None, description="Job name (default: the id).")
    data: dict[str, Any] = Field(default_factory=dict, description="The job payload.")
    options: dict[str, Any] | None = Field(default=None, description="Job options.")
    limit: int | None = Field(default=None, ge=1, description="At most this many runs.")
    start_date: int | datetime | None = Field(default=None, description="No run before.")
    end_date: int | datetime | None = Field(default=None, description="No run after.")
    immediately: bool = Field(default=False, description="A pattern runs once at upsert.")

    def upsert_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``upsert_job_scheduler`` (all but queue and id)."""
        return self.model_dump(exclude={"queue"})


class QueuekitSettings(BaseSettings):
    """All of queuekit's settings."""

    model_config = SettingsConfigDict(
        env_prefix="QUEUEKIT_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
    )

    backend: Literal["redis", "memory"] = Field(
        default="redis", description="redis (BullMQ) or memory (one process, for tests/demo)."
    )
    redis: RedisSettings = RedisSettings()
    jobs: JobDefaults = JobDefaults()
    worker: WorkerSettings = WorkerSettings()
    breaker: BreakerSettings = BreakerSettings()
    security: SecuritySettings = SecuritySettings()
    plugins: list[str] = Field(default_factory=list, description="Plugin modules to load.")
    schedules: dict[str, ScheduleSettings] = Field(
        default_factory=dict, description="Job schedulers by id, upserted at start-up.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        path = config_path()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def config_path() -> Path | None:
    """The YAML file settings are read from, or None when there is none."""
    named = os.environ.get(CONFIG_ENV_VAR)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigurationError(f"{CONFIG_ENV_VAR}={named!r}: no such file")
        return path
    for candidate in (Path.cwd() / "config.yaml", _PROJECT_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def load_settings(**overrides: Any) -> QueuekitSettings:
    """Read the settings; a bad value raises :class:`ConfigurationError` naming its path."""
    try:
        return QueuekitSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid queuekit settings: {problems}") from exc
