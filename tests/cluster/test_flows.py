"""Flows across queues on the cluster: they work with ``cluster_slots: shared`` (one slot
for every queue) and are refused, with nothing written, with a slot per queue. Here with
bullmq's own ``FlowProducer`` on queuekit's connection and with ``add_flow``; the behaviour
suite's flow tests run on the cluster in ``test_behaviour_flows.py``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import bullmq
import pytest
from redis.exceptions import RedisClusterException, ResponseError

from queuekit import (
    ConfigurationError,
    FlowJob,
    JobContext,
    JobResult,
    QueueName,
    QueueService,
    RedisQueueService,
)
from tests.support.redis_cluster import RedisClusterServers

REPORTS, ANALYTICS = QueueName.REPORTS, QueueName.ANALYTICS
REPORT = {"userId": "u1", "reportType": "monthly", "startDate": "2026-01-01",
          "endDate": "2026-01-31"}


@pytest.fixture(params=["redis", "redis-bullmq"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _flow() -> dict[str, Any]:
    return {"name": "report", "queueName": str(REPORTS), "data": REPORT, "children": [
        {"name": "event", "queueName": str(ANALYTICS),
         "data": {"userId": "u1", "event": "report-requested"}}]}


async def test_a_flow_across_queues_runs_with_one_shared_slot(
        service_factory: Callable[..., Awaitable[QueueService]]) -> None:
    service = await service_factory(redis={"cluster_slots": "shared"})
    assert isinstance(service, RedisQueueService)
    order: list[str] = []

    async def run(job: JobContext[Any]) -> JobResult:
        order.append(job.queue)
        return JobResult(success=True)

    producer = bullmq.FlowProducer({"connection": service.connection.client,
                                    "prefix": service.queue_prefix(REPORTS)})
    tree = await producer.add(_flow())
    parent_id, child_id = tree["job"].id, tree["children"][0]["job"].id
    waiting = await service.get_job(REPORTS, parent_id)
    assert waiting is not None and waiting.state == "waiting-children"
    service.create_worker(REPORTS, run)
    service.create_worker(ANALYTICS, run)
    child = await service.wait_for_job(ANALYTICS, child_id, timeout=10)
    parent = await service.wait_for_job(REPORTS, parent_id, timeout=10)
    assert child.state == parent.state == "completed"
    assert order == [ANALYTICS, REPORTS]


async def test_a_flow_within_one_queue_runs_with_a_slot_per_queue(
        service_factory: Callable[..., Awaitable[QueueService]]) -> None:
    service = await service_factory()
    assert isinstance(service, RedisQueueService)

    async def run(job: JobContext[Any]) -> JobResult:
        return JobResult(success=True)

    producer = bullmq.FlowProducer({"connection": service.connection.client,
                                    "prefix": service.queue_prefix(REPORTS)})
    tree = await producer.add({**_flow(), "children": [
        {"name": "part", "queueName": str(REPORTS), "data": REPORT}]})
    service.create_worker(REPORTS, run)
    parent = await service.wait_for_job(REPORTS, tree["job"].id, timeout=10)
    child = await service.wait_for_job(REPORTS, tree["children"][0]["job"].id, timeout=10)
    assert parent.state == child.state == "completed"
    assert child.finished_at is not None and parent.processed_at is not None
    assert child.finished_at <= parent.processed_at


async def test_a_flow_across_queues_is_refused_with_a_slot_per_queue(
        redis_cluster: RedisClusterServers, key_prefix: str,
        service_factory: Callable[..., Awaitable[QueueService]]) -> None:
    service = await service_factory()
    assert isinstance(service, RedisQueueService)
    producer = bullmq.FlowProducer({"connection": service.connection.client,
                                    "prefix": service.queue_prefix(REPORTS)})
    # The child's keys are under another queue's prefix: another slot than the parent's.
    flow = _flow()
    flow["children"][0]["prefix"] = service.queue_prefix(ANALYTICS)
    with pytest.raises((RedisClusterException, ResponseError), match=r"(?i)slot"):
        await producer.add(flow)
    client = redis_cluster.client()
    try:
        assert not list(client.scan_iter(match=f"{{{key_prefix}*", target_nodes=client.PRIMARIES))
    finally:
        client.close()


async def test_add_flow_across_queues_with_a_slot_per_queue_names_the_setting(
        redis_cluster: RedisClusterServers, key_prefix: str,
        service_factory: Callable[..., Awaitable[QueueService]]) -> None:
    service = await service_factory()
    flow = FlowJob(REPORTS, "report", REPORT, children=[
        FlowJob(ANALYTICS, "event", {"userId": "u1", "event": "report-requested"})])
    with pytest.raises(ConfigurationError, match=r"redis\.cluster_slots: shared"):
        await service.add_flow(flow)
    client = redis_cluster.client()
    try:
        assert not list(client.scan_iter(match=f"{{{key_prefix}*", target_nodes=client.PRIMARIES))
    finally:
        client.close()
    # Within one queue the same call works.
    node = await service.add_flow(FlowJob(REPORTS, "report", REPORT, children=[
        FlowJob(REPORTS, "part", REPORT)]))
    assert node.job.state == "waiting-children"
