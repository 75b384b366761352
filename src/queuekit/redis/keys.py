"""Every Redis key queuekit names, in one place.

BullMQ's keys are ``<prefix>:<queue>:<name>`` (``wait``, ``active``, ``events`` ...) and
``<prefix>:<queue>:<job id>`` for a job's hash. The key lists below are the ``KEYS`` of
the BullMQ scripts queuekit calls itself, by the names bullmq's ``Scripts.getKeys`` takes
(so the same lists build the same keys as bullmq does). queuekit's own keys (the per-user
rate-limit windows) live under the same prefix and a ``qk`` segment no BullMQ queue uses.
"""

from __future__ import annotations

#: ``KEYS`` of ``addStandardJob``.
ADD_STANDARD_KEYS = ("wait", "paused", "meta", "id", "completed", "delayed", "active",
                     "events", "marker")
#: ``KEYS`` of ``addDelayedJob``.
ADD_DELAYED_KEYS = ("marker", "meta", "id", "delayed", "completed", "events")
#: ``KEYS`` of ``addPrioritizedJob``.
ADD_PRIORITIZED_KEYS = ("marker", "meta", "id", "prioritized", "delayed", "completed",
                        "active", "events", "pc")
#: ``KEYS`` of ``moveToActive``.
MOVE_TO_ACTIVE_KEYS = ("wait", "active", "prioritized", "events", "stalled", "limiter",
                       "delayed", "paused", "meta", "pc", "marker")
#: The queue keys at the head of ``moveToFinished``'s ``KEYS`` (the job's hash, the
#: metrics key and the marker follow).
MOVE_TO_FINISHED_KEYS = ("wait", "active", "prioritized", "events", "stalled", "limiter",
                         "delayed", "paused", "meta", "pc", "completed")
#: ``KEYS`` of ``updateJobScheduler`` (the producer's job key and ``active`` follow).
UPDATE_SCHEDULER_KEYS = ("repeat", "delayed", "wait", "paused", "meta", "prioritized",
                         "marker", "id", "events", "pc")
#: ``KEYS`` of ``moveJobFromActiveToWait`` (a rate-limited job back to wait).
MOVE_ACTIVE_TO_WAIT_KEYS = ("active", "wait", "stalled", "paused", "meta", "limiter",
                            "prioritized", "marker", "events")
#: ``KEYS`` of ``getStateV2`` (``Queue.getJobState``).
GET_STATE_KEYS = ("completed", "failed", "delayed", "active", "wait", "paused",
                  "waiting-children", "prioritized")
#: The metrics list of completed jobs, relative to the queue.
COMPLETED_METRICS = "metrics:completed"


def queue_key(prefix: str, queue: str, name: str = "") -> str:
    """BullMQ's key ``name`` of ``queue`` (``""``: the queue's own prefix, ``...:``)."""
    return f"{prefix}:{queue}:{name}"


def events_key(prefix: str, queue: str) -> str:
    """BullMQ's event stream of ``queue``."""
    return queue_key(prefix, queue, "events")


def job_key(prefix: str, queue: str, job_id: str) -> str:
    """BullMQ's hash of one job."""
    return queue_key(prefix, queue, job_id)


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


def worker_client_name(prefix: str, queue: str, worker: str) -> str:
    """The client name bullmq gives a worker's connections (dashboards count these)."""
    return f"{queue_key(prefix, queue)[:-1]}:w:{worker}"


def access_check_key(prefix: str) -> str:
    """A key under ``prefix`` the start-up check reads (never written) to prove ACL access."""
    return f"{prefix}:qk:access-check"


def rate_limit_key(prefix: str, queue: str, user_id: str) -> str:
    """The sliding window of one user's additions to ``queue``."""
    return f"{prefix}:qk:rate:{queue}:{user_id}"


#: BullMQ's sorted set of a queue's job schedulers (member: id, score: next run in ms).
REPEAT = "repeat"


def scheduler_key(prefix: str, queue: str, scheduler_id: str) -> str:
    """BullMQ's hash of one job scheduler (its spec, template and iteration count)."""
    return f"{queue_key(prefix, queue, REPEAT)}:{scheduler_id}"


def declared_schedules_key(prefix: str) -> str:
    """queuekit's set of the schedulers declared in configuration (``<queue>:<id>``)."""
    return f"{prefix}:qk:schedules:declared"
def dedup_key(prefix: str, queue: str, dedup_id: str) -> str:
    """BullMQ's deduplication key: holds the id of the job that owns ``dedup_id``."""
    return queue_key(prefix, queue, f"de:{dedup_id}")


def dedup_key_under(queue_prefix_key: str, dedup_id: str) -> str:
    """:func:`dedup_key` from a queue's own key prefix (``<prefix>:<queue>:``)."""
    return f"{queue_prefix_key}de:{dedup_id}"
#: A flow parent's child records, appended to its job key (BullMQ's names): children
#: still pending, completed ones (their return values), ignored failures, failures that
#: fail the parent.
FLOW_CHILDREN_PENDING = ":dependencies"
FLOW_CHILDREN_PROCESSED = ":processed"
FLOW_CHILDREN_FAILED = ":failed"
FLOW_CHILDREN_UNSUCCESSFUL = ":unsuccessful"
#: The states ``cancel_job`` removes a job from (a list, then sorted sets).
CANCEL_REMOVABLE = ("wait", "paused", "prioritized", "delayed")


def cancel_channel(prefix: str, queue: str) -> str:
    """The pub/sub channel on which ``cancel_job`` asks ``queue``'s workers to stop a job."""
    return f"{prefix}:qk:cancel:{queue}"

# -- Redis Cluster ----------------------------------------------------------------------
# A BullMQ script touches many keys of one queue, so in a cluster they must share a hash
# slot: Redis hashes only the first ``{...}`` of a key. BullMQ's documented way is a
# braced prefix; Node must be given the same prefix (``{queue}`` or ``{queue:<name>}``).


def has_hash_tag(text: str) -> bool:
    """Whether ``text`` has a non-empty ``{...}`` that Redis Cluster would hash."""
    start = text.find("{")
    return start >= 0 and text.find("}", start + 2) > start


def cluster_prefix(prefix: str, queue: str, slots: str) -> str:
    """The BullMQ prefix of ``queue`` on a cluster.

    ``shared``: ``{<prefix>}`` (every queue in one slot, as flows across queues need);
    ``queue``: ``{<prefix>:<queue>}`` (one slot per queue, spread over the shards). A
    prefix that already has a hash tag is used unchanged.
    """
    if has_hash_tag(prefix):
        return prefix
    return f"{{{prefix}}}" if slots == "shared" else f"{{{prefix}:{queue}}}"


def cluster_meta_pattern(prefix: str, slots: str) -> str:
    """A ``SCAN`` pattern for the ``meta`` hash of every queue under a cluster prefix."""
    if has_hash_tag(prefix) or slots == "shared":
        return meta_key_pattern(cluster_prefix(prefix, "", "shared"))
    return f"{{{prefix}:*}}:*:meta"


def split_tagged_key(key: str) -> tuple[str, str] | None:
    """(``{tag}`` prefix, rest) of a key that starts with a hash tag, else None."""
    end = key.find("}:")
    return (key[:end + 1], key[end + 2:]) if key.startswith("{") and end > 0 else None


def queue_of_cluster_meta_key(prefix: str, slots: str, key: str) -> str | None:
    """The queue whose ``meta`` hash ``key`` is (cluster prefixes), or None."""
    if has_hash_tag(prefix) or slots == "shared":
        return queue_of_meta_key(cluster_prefix(prefix, "", "shared"), key)
    head = f"{{{prefix}:"
    if not key.startswith(head) or "}:" not in key:
        return None
    name = key[len(head):key.index("}:")]
    return name if queue_of_meta_key(cluster_prefix(prefix, name, slots), key) == name \
        else None
