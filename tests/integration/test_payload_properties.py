"""Property: any input to a payload model is either accepted and round-trips through Redis
unchanged, or refused with queuekit's own error naming the fields."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queuekit import PayloadValidationError, QueueName, RedisQueueService, load_settings
from queuekit.payloads import JobPayload
from queuekit.queues import DEFAULT_PAYLOAD_MODELS
from queuekit.redis.keys import job_key
from tests.support.redis_server import RedisServer

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from(["full", "incremental", "email", "push", "telegram", "monthly", "annual",
                     "custom", "2026-01-01", "2026-12-31", "u1"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


def wire_keys(model: type[JobPayload]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def payloads(model: type[JobPayload]) -> st.SearchStrategy[dict[str, Any]]:
    known = st.fixed_dictionaries({}, optional={k: values for k in wire_keys(model)})
    extra = st.dictionaries(st.text(min_size=1, max_size=10), values, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, known, extra)


@pytest.fixture(scope="module")
def runner_and_service(redis_server: RedisServer) -> Iterator[tuple[asyncio.Runner,
                                                                    RedisQueueService]]:
    runner = asyncio.Runner()
    prefix = f"qk-prop-{uuid.uuid4().hex[:8]}"
    qs = runner.run(RedisQueueService.connect(
        load_settings(redis={"url": redis_server.url, "prefix": prefix})))
    yield runner, qs
    runner.run(qs.close())
    runner.close()


@pytest.mark.parametrize("queue", list(DEFAULT_PAYLOAD_MODELS))
def test_payloads_round_trip_or_are_refused_by_field(
    queue: str, runner_and_service: tuple[asyncio.Runner, RedisQueueService],
    redis_server: RedisServer,
) -> None:
    runner, qs = runner_and_service
    model = DEFAULT_PAYLOAD_MODELS[queue]
    known = set(wire_keys(model)) | set(model.model_fields)

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=payloads(model))
    def check(data: dict[str, Any]) -> None:
        try:
            prepared = qs.prepare_job(queue, "prop", data)
        except PayloadValidationError as exc:
            assert exc.fields  # noqa: PT017 - hypothesis drives the inputs, not pytest.raises
            names = known | set(data) | {"(root)"}
            for field in exc.fields:
                assert any(field == n or field.startswith((f"{n}.", f"{n}[")) for n in names), (
                    field)
            return
        job = runner.run(qs.add_job(queue, "prop", data))
        info = runner.run(qs.get_job(queue, job.id))
        assert info is not None
        assert info.data == prepared.payload
        with redis_server.client() as client:
            stored = client.hget(job_key(qs.prefix, queue, job.id), "data")
        assert stored is not None
        assert json.loads(stored) == prepared.wire

    check()


def test_missing_wrong_and_extra_fields_are_each_named() -> None:
    qs = RedisQueueService(load_settings())  # validation needs no connection
    cases: dict[str, dict[str, Any]] = {
        QueueName.BANK_SYNC: {"accountId": 1, "syncType": "weekly", "extra": True},
        QueueName.NOTIFICATIONS: {"userId": "u", "type": "fax", "data": [], "cc": "x"},
        QueueName.REPORTS: {"userId": "u", "reportType": "weekly", "endDate": "nope"},
        QueueName.ANALYTICS: {"event": 3, "properties": "x", "bogus": 1},
    }
    expected: dict[str, set[str]] = {
        QueueName.BANK_SYNC: {"userId", "accountId", "syncType", "extra"},
        QueueName.NOTIFICATIONS: {"type", "templateId", "data", "cc"},
        QueueName.REPORTS: {"reportType", "startDate", "endDate"},
        QueueName.ANALYTICS: {"userId", "event", "properties", "bogus"},
    }
    for queue, data in cases.items():
        with pytest.raises(PayloadValidationError) as caught:
            qs.prepare_job(queue, "x", data)
        assert set(caught.value.fields) == expected[queue], queue
