"""Redis Cluster settings and key shapes (no server needed)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from queuekit import ConfigurationError, load_settings
from queuekit.redis.keys import (
    cluster_meta_pattern,
    cluster_prefix,
    has_hash_tag,
    queue_key,
    queue_of_cluster_meta_key,
)


def test_cluster_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUEKIT_REDIS__CLUSTER", "true")
    monkeypatch.setenv("QUEUEKIT_REDIS__URL", "redis://10.0.0.1:7000")
    monkeypatch.setenv("QUEUEKIT_REDIS__CLUSTER_NODES", '["10.0.0.2:7000", "10.0.0.3:7000"]')
    monkeypatch.setenv("QUEUEKIT_REDIS__CLUSTER_SLOTS", "shared")
    redis = load_settings().redis
    assert redis.cluster is True
    assert redis.cluster_nodes == ["10.0.0.2:7000", "10.0.0.3:7000"]
    assert redis.cluster_slots == "shared"
    assert load_settings(redis={"cluster": True}).redis.cluster_slots == "shared"  # env wins


def test_cluster_defaults() -> None:
    redis = load_settings(redis={"url": "redis://127.0.0.1:7000"}).redis
    assert redis.cluster is False
    assert redis.cluster_slots == "queue"
    assert redis.cluster_failover_wait == 5.0


@pytest.mark.parametrize("redis", [
    {"cluster": True, "url": "redis://127.0.0.1:7000/2"},
    {"cluster": True, "url": "unix:///tmp/redis.sock"},
    {"cluster": True, "db": 1},
    {"cluster": True, "cluster_slots": "every"},
])
def test_bad_cluster_settings_name_the_field(redis: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match=r"redis.*cluster"):
        load_settings(redis=redis)


def test_a_slot_per_queue() -> None:
    prefix = cluster_prefix("queue", "bank-sync", "queue")
    assert prefix == "{queue:bank-sync}"
    keys = [queue_key(prefix, "bank-sync", name) for name in ("wait", "meta", "42", "")]
    assert keys[0] == "{queue:bank-sync}:bank-sync:wait"
    assert {key_slot(k.encode()) for k in keys} == {key_slot(b"queue:bank-sync")}
    other = queue_key(cluster_prefix("queue", "reports", "queue"), "reports", "wait")
    assert key_slot(other.encode()) != key_slot(keys[0].encode())


def test_one_slot_for_every_queue() -> None:
    assert cluster_prefix("queue", "bank-sync", "shared") == "{queue}"
    slots = {key_slot(queue_key(cluster_prefix("queue", q, "shared"), q, "wait").encode())
             for q in ("bank-sync", "reports", "analytics")}
    assert slots == {key_slot(b"queue")}


def test_a_prefix_with_a_hash_tag_is_kept() -> None:
    assert has_hash_tag("{bull}") and has_hash_tag("app:{bull}")
    assert not has_hash_tag("bull") and not has_hash_tag("{}") and not has_hash_tag("}{")
    assert cluster_prefix("{bull}", "bank-sync", "queue") == "{bull}"
    assert cluster_meta_pattern("{bull}", "queue") == "{bull}:*:meta"


def test_queues_are_found_from_their_meta_keys() -> None:
    assert cluster_meta_pattern("queue", "queue") == "{queue:*}:*:meta"
    assert queue_of_cluster_meta_key("queue", "queue", "{queue:bank-sync}:bank-sync:meta") \
        == "bank-sync"
    # A tag that does not match the queue after it is not one of ours.
    assert queue_of_cluster_meta_key("queue", "queue", "{queue:a}:b:meta") is None
    assert queue_of_cluster_meta_key("queue", "queue", "{queue:a}:a:wait") is None
    assert queue_of_cluster_meta_key("queue", "shared", "{queue}:reports:meta") == "reports"


async def test_a_command_redirected_too_often_is_tried_again() -> None:
    from redis.exceptions import ClusterError

    from queuekit.redis.cluster import through_failover

    answers: list[BaseException | str] = [ClusterError("TTL exhausted."), "ran"]

    async def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert await through_failover(call, wait=5) == "ran"
    answers[:] = [ClusterError("Cluster mode is not enabled on this node")]
    with pytest.raises(ClusterError, match="not enabled"):  # not a migration: at once
        await through_failover(call, wait=5)
