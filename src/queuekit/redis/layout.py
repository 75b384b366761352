"""Where a service's keys live: the BullMQ prefix of each queue (hash-tagged on Redis
Cluster, see ``keys.cluster_prefix``) and reading queue names and job keys back."""

from __future__ import annotations

from queuekit.errors import ConfigurationError
from queuekit.flows import parse_job_key
from queuekit.redis.keys import (
    cluster_meta_pattern,
    cluster_prefix,
    meta_key_pattern,
    queue_of_cluster_meta_key,
    queue_of_meta_key,
    split_tagged_key,
)
from queuekit.settings import RedisSettings


class KeyLayout:
    """The key prefixes of one service's queues, from its ``redis`` settings."""

    def __init__(self, settings: RedisSettings) -> None:
        self.prefix = settings.prefix
        #: ``queue`` / ``shared`` on a cluster; None on a single Redis.
        self.slots = settings.cluster_slots if settings.cluster else None

    def queue_prefix(self, queue: str) -> str:
        """The BullMQ prefix of ``queue``'s keys."""
        if self.slots is None:
            return self.prefix
        return cluster_prefix(self.prefix, str(queue), self.slots)

    def parse_job_key(self, key: str) -> tuple[str, str] | None:
        """(queue, job id) of a BullMQ job key of these queues, or None."""
        if self.slots is None:
            return parse_job_key(self.prefix, key)
        tagged = split_tagged_key(key)
        if tagged is None:
            return None
        ref = parse_job_key(tagged[0], key)
        return ref if ref is not None and self.queue_prefix(ref[0]) == tagged[0] else None

    def check_one_slot(self, queues: set[str]) -> None:
        """Raise ``ConfigurationError`` unless these queues' keys share one cluster slot
        (a flow's MULTI/EXEC must)."""
        if len({self.queue_prefix(queue) for queue in queues}) > 1:
            raise ConfigurationError(
                f"a flow across queues {sorted(queues)} needs one hash slot on Redis Cluster: "
                "set redis.cluster_slots: shared (or a prefix with a {hash tag})")

    def meta_pattern(self) -> str:
        """A ``SCAN`` pattern for the ``meta`` hash of every queue."""
        if self.slots is None:
            return meta_key_pattern(self.prefix)
        return cluster_meta_pattern(self.prefix, self.slots)

    def queue_of_meta_key(self, key: str) -> str | None:
        """The queue whose ``meta`` hash ``key`` is, or None."""
        if self.slots is None:
            return queue_of_meta_key(self.prefix, key)
        return queue_of_cluster_meta_key(self.prefix, self.slots, key)
