"""Payloads carry ids, never secrets."""

from __future__ import annotations

import pytest

from queuekit import SensitiveDataError
from queuekit.security import SensitiveKeyPolicy, normalise_key
from queuekit.settings import DEFAULT_SENSITIVE_KEYS

POLICY = SensitiveKeyPolicy(DEFAULT_SENSITIVE_KEYS)


@pytest.mark.parametrize("key", ["token", "Password", "API_KEY", "apiKey", "api-key",
                                 "Authorization", "accessToken", "REFRESH-TOKEN",
                                 "private_key", "clientSecret", "github_token", "dbPassword"])
def test_secret_looking_keys_are_refused_at_any_depth(key: str) -> None:
    with pytest.raises(SensitiveDataError) as caught:
        POLICY.check({"userId": "u", "data": {"items": [{"nested": {key: "x"}}]}}, "payload")
    assert caught.value.fields == (f"data.items[0].nested.{key}",)
    assert "load secrets inside the processor" in str(caught.value)


@pytest.mark.parametrize("key", ["userId", "tokenCount", "templateId", "secretary",
                                 "passwordHint_id", "keyboard"])
def test_ordinary_keys_pass(key: str) -> None:
    POLICY.check({key: {"tokens_used": 3}, "list": [1, "two"]}, "payload")


def test_every_match_is_reported_and_the_list_is_configurable() -> None:
    with pytest.raises(SensitiveDataError) as caught:
        POLICY.check({"token": 1, "inner": {"password": 2}}, "payload")
    assert caught.value.fields == ("token", "inner.password")
    custom = SensitiveKeyPolicy(["iban"])
    custom.check({"token": "allowed now"}, "payload")
    with pytest.raises(SensitiveDataError):
        custom.check({"IBAN": "DE00"}, "payload")
    assert normalise_key("Access-Token") == "accesstoken"


def test_only_fields_that_can_hold_keys_are_walked() -> None:
    from typing import Any, Literal

    from queuekit import JobPayload, NotificationJobData, QueueRegistry
    from queuekit.security import dynamic_fields
    from queuekit.testing import InMemoryQueueService

    class Scalars(JobPayload):
        user_id: str
        kind: Literal["a", "b"]
        count: int | None = None

    class Nested(JobPayload):
        user_id: str
        meta: dict[str, Any]

    class Leaky(JobPayload):
        user_id: str
        api_key: str

    assert dynamic_fields(Scalars, POLICY) == ()
    assert dynamic_fields(Nested, POLICY) == ("meta",)
    assert dynamic_fields(NotificationJobData, POLICY) == ("data",)
    assert dynamic_fields(Leaky, POLICY) is True

    registry = QueueRegistry({"nested": Nested, "leaky": Leaky})
    qs = InMemoryQueueService(registry=registry)
    with pytest.raises(SensitiveDataError) as caught:
        qs.prepare_job("nested", "x", {"userId": "u", "meta": {"deep": [{"Token": 1}]}})
    assert caught.value.fields == ("meta.deep[0].Token",)
    with pytest.raises(SensitiveDataError) as caught:
        qs.prepare_job("leaky", "x", {"userId": "u", "apiKey": "k"})
    assert caught.value.fields == ("apiKey",)
    qs.prepare_job("nested", "x", {"userId": "u", "meta": {"deep": [{"tokens_used": 1}]}})
