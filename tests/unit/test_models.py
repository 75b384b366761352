"""Payload models, options, results and the registry."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from queuekit import (
    AnalyticsJobData,
    BankSyncJobData,
    ConfigurationError,
    JobOptions,
    JobPayload,
    JobResult,
    NotificationJobData,
    PayloadValidationError,
    QueueName,
    QueueRegistry,
    ReportJobData,
    UnknownQueueError,
)
from queuekit.jobs import JobState, check_progress, ms_to_datetime, result_from_wire, validate_model
from queuekit.redis.wire import bullmq_options
from queuekit.settings import BackoffSettings, JobDefaults, KeepJobs


def test_wire_format_is_the_typescript_interfaces() -> None:
    assert BankSyncJobData(user_id="u", account_id="a", sync_type="full").to_wire() == {
        "userId": "u", "accountId": "a", "syncType": "full"}
    assert NotificationJobData(user_id="u", type="push", template_id="t",
                               data={"amount": 3}).to_wire() == {
        "userId": "u", "type": "push", "templateId": "t", "data": {"amount": 3}}
    report = ReportJobData(user_id="u", report_type="monthly", start_date=dt.date(2026, 1, 1),
                           end_date=dt.date(2026, 1, 31))
    assert report.to_wire() == {"userId": "u", "reportType": "monthly",
                                "startDate": "2026-01-01", "endDate": "2026-01-31"}
    assert AnalyticsJobData(user_id="u", event="login").to_wire() == {
        "userId": "u", "event": "login", "properties": {}}


def test_the_stored_json_is_the_json_of_the_wire_dict() -> None:
    from queuekit.redis.commands import _dumps

    plain = BankSyncJobData(user_id="u-1", account_id="a", sync_type="full")
    # ASCII: byte for byte what bullmq's json.dumps(separators=(",", ":")) writes.
    assert plain.wire_json() == _dumps(plain.to_wire()).encode()
    report = ReportJobData(user_id="u", report_type="custom", start_date=dt.date(2026, 1, 1),
                           end_date=dt.date(2026, 2, 28))
    assert report.wire_json() == _dumps(report.to_wire()).encode()
    # Beyond ASCII, nested data, numbers: UTF-8 as Node's JSON.stringify writes it, and
    # the same value once parsed.
    rich = NotificationJobData(user_id="Zoë", type="email", template_id="t", data={
        "amount": 12.5, "big": 10**16, "tiny": 1e-7, "nested": {"list": [1, "zwei", None]},
        "when": dt.datetime(2026, 12, 3, 6, 0, tzinfo=dt.UTC), "emoji": "✓"})
    assert json.loads(rich.wire_json()) == json.loads(_dumps(rich.to_wire())) == rich.to_wire()
    assert "Zoë".encode() in rich.wire_json()


def test_both_spellings_are_accepted_and_round_trip() -> None:
    camel = validate_model(BankSyncJobData, {"userId": "u", "accountId": "a",
                                             "syncType": "incremental"}, "payload")
    snake = validate_model(BankSyncJobData, {"user_id": "u", "account_id": "a",
                                             "sync_type": "incremental"}, "payload")
    assert camel == snake
    assert validate_model(BankSyncJobData, camel.to_wire(), "payload") == camel


@pytest.mark.parametrize(
    ("model", "data", "fields"),
    [
        (BankSyncJobData, {"userId": "u", "accountId": "a"}, {"syncType"}),
        (BankSyncJobData, {"userId": 5, "accountId": "a", "syncType": "full"}, {"userId"}),
        (BankSyncJobData, {"userId": "", "accountId": "a", "syncType": "full"}, {"userId"}),
        (NotificationJobData, {"userId": "u", "type": "sms", "templateId": "t"}, {"type"}),
        (ReportJobData, {"userId": "u", "reportType": "monthly", "startDate": "2026-02-01",
                         "endDate": "2026-01-01"}, {"(root)"}),
        (ReportJobData, {"userId": "u", "reportType": "monthly", "startDate": "soon",
                         "endDate": "2026-01-01"}, {"startDate"}),
        (AnalyticsJobData, {"userId": "u", "event": "x", "junk": 1}, {"junk"}),
    ],
)
def test_invalid_payloads_name_each_field(model: type[JobPayload], data: dict[str, Any],
                                          fields: set[str]) -> None:
    with pytest.raises(PayloadValidationError) as caught:
        validate_model(model, data, "payload")
    assert set(caught.value.fields) == fields
    assert str(caught.value).startswith("invalid payload: ")


def test_report_dates_must_be_in_order_message() -> None:
    with pytest.raises(PayloadValidationError, match="after endDate"):
        validate_model(ReportJobData, {"userId": "u", "reportType": "custom",
                                       "startDate": "2026-02-01", "endDate": "2026-01-01"}, "p")


def test_a_model_of_the_wrong_type_or_a_non_mapping_is_refused() -> None:
    other = AnalyticsJobData(user_id="u", event="e")
    with pytest.raises(PayloadValidationError, match="expected BankSyncJobData"):
        validate_model(BankSyncJobData, other, "payload")
    with pytest.raises(PayloadValidationError, match="got list"):
        validate_model(BankSyncJobData, ["u"], "payload")


def test_options_merge_over_the_defaults() -> None:
    defaults = JobDefaults()
    assert bullmq_options(JobOptions().resolve(defaults)) == {
        "attempts": 3, "backoff": {"type": "exponential", "delay": 1000},
        "removeOnComplete": {"count": 100, "age": 86400}, "removeOnFail": {"count": 500}}
    opts = JobOptions(attempts=1, backoff=250, delay=5, priority=2, job_id="abc", lifo=True,
                      remove_on_complete=True, remove_on_fail=KeepJobs(age=60))
    resolved = opts.resolve(defaults)
    assert (resolved.attempts, resolved.backoff, resolved.delay, resolved.priority,
            resolved.job_id, resolved.lifo, resolved.remove_on_complete,
            resolved.remove_on_fail) == (1, BackoffSettings(type="fixed", delay=250), 5, 2,
                                         "abc", True, True, KeepJobs(age=60))
    assert bullmq_options(resolved) == {
        "attempts": 1, "backoff": {"type": "fixed", "delay": 250}, "delay": 5, "priority": 2,
        "jobId": "abc", "lifo": True, "removeOnComplete": True, "removeOnFail": {"age": 60}}
    assert JobOptions.model_validate({"jobId": "x", "removeOnFail": 10}).remove_on_fail == 10


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"attempts": 0}, "attempts"),
        ({"delay": -5}, "delay"),
        ({"priority": 3_000_000}, "priority"),
        ({"job_id": "123"}, "job_id"),
        ({"jobId": "a:b"}, "jobId"),
        ({"backoff": -1}, "backoff"),
        ({"retries": 3}, "retries"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadValidationError) as caught:
        validate_model(JobOptions, options, "job options")
    assert caught.value.fields == (field,)


def test_results_and_progress() -> None:
    assert result_from_wire({"success": True, "message": "m"}) == JobResult(success=True,
                                                                            message="m")
    assert result_from_wire({"rows": 1}) == {"rows": 1}
    assert result_from_wire("text") == "text"
    assert JobResult(success=False, data=[1]).to_wire() == {"success": False, "data": [1]}
    assert check_progress(0) == 0
    assert check_progress({"step": "x"}) == {"step": "x"}
    for bad in (True, -1, 101, 1.5, {"x": object()}):
        with pytest.raises(PayloadValidationError, match="progress"):
            check_progress(bad)
    assert ms_to_datetime(0) is None
    assert ms_to_datetime(1000) == dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC)
    assert JobState.COMPLETED.finished and not JobState.ACTIVE.finished


def test_registry_registers_plugins_and_refuses_conflicts() -> None:
    class InvoiceJobData(JobPayload):
        invoice_id: str

    registry = QueueRegistry()
    assert QueueName.BANK_SYNC in registry
    assert len(registry) == 4
    registry.register("invoices", InvoiceJobData)
    registry.register("invoices", InvoiceJobData)
    assert registry.model_for("invoices") is InvoiceJobData
    assert list(registry) == sorted(["analytics", "bank-sync", "invoices", "notifications",
                                     "reports"])
    with pytest.raises(ConfigurationError, match="already takes"):
        registry.register("invoices", BankSyncJobData)
    with pytest.raises(ConfigurationError, match="subclass"):
        registry.register("things", dict)  # type: ignore[arg-type]
    for bad in ("", "a:b", " padded"):
        with pytest.raises(ConfigurationError, match="invalid"):
            registry.register(bad, InvoiceJobData)
    with pytest.raises(UnknownQueueError) as caught:
        registry.model_for("missing")
    assert "register one" in str(caught.value)
    assert len(QueueRegistry({})) == 0


def test_timestamps_convert_the_same_when_repeated_or_interleaved() -> None:
    for ms in (1000, 1000, 1_764_000_000_123, 1000, 1_764_000_000_123.5):
        assert ms_to_datetime(ms) == dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


@pytest.mark.parametrize("options", [None, {"delay": 500}, {"priority": 3, "attempts": 5}])
def test_a_prepared_jobs_info_is_the_jobinfo_of_its_fields(options: Any) -> None:
    from queuekit import JobInfo, QueueService
    from queuekit.memory import InMemoryQueueService

    service: QueueService = InMemoryQueueService()
    data = BankSyncJobData(user_id="u1", account_id="a1", sync_type="full")
    job = service.prepare_job("bank-sync", "sync", data, options)
    info = job.info("7", 1_764_000_000_123)
    resolved = job.options
    state = (JobState.DELAYED if resolved.delay else
             JobState.PRIORITIZED if resolved.priority else JobState.WAITING)
    assert info == JobInfo(
        id="7", name="sync", queue="bank-sync", data=data, state=state, progress=0,
        attempts_made=0, return_value=None, failed_reason=None,
        created_at=ms_to_datetime(1_764_000_000_123), processed_at=None, finished_at=None,
        max_attempts=resolved.attempts, delay=resolved.delay, priority=resolved.priority)
    assert repr(info).startswith("JobInfo(id='7'")
    with pytest.raises(AttributeError):  # still frozen
        info.id = "8"  # type: ignore[misc]


def test_a_raw_jobs_info_is_the_jobinfo_of_its_fields() -> None:
    from queuekit import JobInfo
    from queuekit.records import RawJob

    raw = RawJob(id="9", name="sync", data={"userId": "u1", "accountId": "a1",
                                             "syncType": "full"},
                 state="failed", max_attempts=3, progress={"step": 2}, attempts_made=3,
                 return_value=None, failed_reason="boom", timestamp=1_764_000_000_000,
                 processed_on=1_764_000_000_100, finished_on=1_764_000_000_200, delay=5,
                 priority=2, stacktrace=("line 1",))
    info = raw.to_info("bank-sync", QueueRegistry())
    assert info == JobInfo(
        id="9", name="sync", queue="bank-sync",
        data=BankSyncJobData(user_id="u1", account_id="a1", sync_type="full"),
        state=JobState.FAILED, progress={"step": 2}, attempts_made=3, return_value=None,
        failed_reason="boom", created_at=ms_to_datetime(1_764_000_000_000),
        processed_at=ms_to_datetime(1_764_000_000_100),
        finished_at=ms_to_datetime(1_764_000_000_200), max_attempts=3, delay=5, priority=2,
        stacktrace=("line 1",))
    with pytest.raises(AttributeError):  # still frozen
        info.state = JobState.COMPLETED  # type: ignore[misc]
