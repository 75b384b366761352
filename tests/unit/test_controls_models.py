"""The deduplication option and the controls' argument checks (no store needed)."""

from __future__ import annotations

import pytest

from queuekit import Deduplication, JobOptions, PayloadValidationError, RateLimitedError
from queuekit.jobs import validate_model
from queuekit.redis.wire import bullmq_options, dedup_options
from queuekit.settings import JobDefaults


def test_deduplication_takes_its_id_by_position_or_name() -> None:
    assert Deduplication("sync-a1", ttl=5) == Deduplication(id="sync-a1", ttl=5)
    with pytest.raises(PayloadValidationError) as caught:
        validate_model(JobOptions, {"deduplication": {"ttl": 5}}, "job options")
    assert caught.value.fields == ("deduplication.id",)


def test_wire_form_is_bullmqs_short_de_with_only_the_set_fields() -> None:
    assert dedup_options(Deduplication("a")) == {"id": "a"}
    assert dedup_options(Deduplication("a", ttl=10, extend=True, replace=True)) == {
        "id": "a", "ttl": 10, "extend": True, "replace": True}
    options = JobOptions(deduplication=Deduplication("a")).resolve(JobDefaults())
    assert bullmq_options(options)["de"] == {"id": "a"}


def test_rate_limited_error_carries_the_delay() -> None:
    error = RateLimitedError(1500)
    assert error.delay_ms == 1500
    assert "1500 ms" in str(error)
