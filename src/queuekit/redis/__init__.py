"""The Redis backend: BullMQ's keys, scripts and wire format on a real Redis.

The only package of queuekit that imports ``bullmq``. Jobs written here are read and run
by Node BullMQ workers and dashboards, and the other way round.

- :mod:`~queuekit.redis.service`: ``RedisQueueService``; :mod:`~queuekit.redis.events`
  its event streams.
- :mod:`~queuekit.redis.worker` the Redis side of the worker template, with two engines:
  :mod:`~queuekit.redis.fast_engine` (default) and :mod:`~queuekit.redis.bullmq_engine`.
- :mod:`~queuekit.redis.wire` (camelCase options), :mod:`~queuekit.redis.keys` (every key
  name), :mod:`~queuekit.redis.commands` (script calls built for the hot path),
  :mod:`~queuekit.redis.jobs` (jobs as the engines hold them).
- :mod:`~queuekit.redis.connection`, :mod:`~queuekit.redis.pipeline`,
  :mod:`~queuekit.redis.breaker`, :mod:`~queuekit.redis.ratelimit`.
"""

from queuekit.redis.breaker import AsyncCircuitBreaker, make_breaker
from queuekit.redis.connection import QueueConnection, ServerInfo
from queuekit.redis.service import RedisQueueService

__all__ = ["AsyncCircuitBreaker", "QueueConnection", "RedisQueueService", "ServerInfo",
           "make_breaker"]
