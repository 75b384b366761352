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
