"""A queuekit flow in Redis is what BullMQ's FlowProducer writes: parentKey, the parent JSON
with the failure flag, the short option names, the parent's dependency set."""

from __future__ import annotations

import json

from queuekit import FlowJob, QueueName, RedisQueueService
from tests.conftest import SettingsFactory

BANK, REPORTS = QueueName.BANK_SYNC, QueueName.REPORTS


async def test_flow_hashes_are_bullmqs(make_settings: SettingsFactory) -> None:
    qs = await RedisQueueService.connect(make_settings())
    try:
        node = await qs.add_flow(FlowJob(
            REPORTS, "report", {"userId": "u1", "reportType": "monthly",
                                "startDate": "2026-11-01", "endDate": "2026-11-30"},
            children=[FlowJob(BANK, "sync", {"userId": "u1", "accountId": "a1",
                                             "syncType": "full"},
                              {"fail_parent_on_failure": True, "timeout": 900})]))
        client, prefix = qs.connection.client, qs.prefix
        parent_key = f"{prefix}:{REPORTS}:{node.job.id}"
        child_id = node.children[0].job.id
        child = await client.hgetall(f"{prefix}:{BANK}:{child_id}")
        assert child["parentKey"] == parent_key
        assert json.loads(child["parent"]) == {"id": node.job.id,
                                               "queueKey": f"{prefix}:{REPORTS}",
                                               "fpof": True}
        opts = json.loads(child["opts"])
        assert opts["fpof"] is True and opts["timeout"] == 900
        assert "failParentOnFailure" not in opts
        assert await client.smembers(parent_key + ":dependencies") == {
            f"{prefix}:{BANK}:{child_id}"}
        assert await client.zscore(f"{prefix}:{REPORTS}:waiting-children", node.job.id)
        assert await client.lrange(f"{prefix}:{BANK}:wait", 0, -1) == [child_id]
    finally:
        await qs.close()
