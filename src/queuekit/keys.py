"""Every Redis key queuekit writes itself, in one place.

BullMQ's own keys (``<prefix>:<queue>:wait``, ``...:<job id>``, ``...:events``) are
bullmq's business; queuekit only adds the per-user rate-limit windows, under the same
prefix and a ``qk`` segment that no BullMQ queue key uses.
"""

from __future__ import annotations


def events_key(prefix: str, queue: str) -> str:
    """BullMQ's event stream of ``queue``."""
    return f"{prefix}:{queue}:events"


def job_key(prefix: str, queue: str, job_id: str) -> str:
    """BullMQ's hash of one job."""
    return f"{prefix}:{queue}:{job_id}"


def meta_key_pattern(prefix: str) -> str:
    """A ``SCAN`` pattern matching BullMQ's ``meta`` hash of every queue under ``prefix``."""
    return f"{prefix}:*:meta"


def queue_of_meta_key(prefix: str, key: str) -> str | None:
    """The queue whose ``meta`` hash ``key`` is, or None for another key."""
    head, tail = f"{prefix}:", ":meta"
    if not (key.startswith(head) and key.endswith(tail)):
        return None
    name = key[len(head):-len(tail)]
    return name if name and ":" not in name else None


def rate_limit_key(prefix: str, queue: str, user_id: str) -> str:
    """The sliding window of one user's additions to ``queue``."""
    return f"{prefix}:qk:rate:{queue}:{user_id}"
