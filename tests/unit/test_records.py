"""The bookkeeping done while an add is in flight (``records.built_while``) and the
record of a checked job (``PreparedJob.checked``)."""

from __future__ import annotations

import asyncio

import pytest

from queuekit import BankSyncJobData, records
from queuekit.jobs import JobOptions
from queuekit.settings import QueuekitSettings


async def test_a_failed_build_leaves_the_add_to_finish_on_its_own() -> None:
    finished = asyncio.Event()

    async def add() -> str:  # holds a connection until it has run to its end
        await asyncio.sleep(0)
        finished.set()
        return "1"

    def build() -> str:
        raise MemoryError("no room for the record")

    pending = add()
    with pytest.raises(MemoryError):
        records.built_while(pending, build)
    async with asyncio.timeout(5):
        await finished.wait()
    assert not records._finishing or all(task.done() for task in records._finishing)


async def test_a_build_returns_what_it_built() -> None:
    async def add() -> str:
        return "7"

    pending = add()
    assert records.built_while(pending, lambda: "record") == "record"
    assert await pending == "7"


def test_a_checked_job_equals_the_dataclass_one_and_keeps_its_json() -> None:
    payload = BankSyncJobData(user_id="u1", account_id="a1", sync_type="full")
    options = JobOptions().resolve(QueuekitSettings().jobs)
    checked = records.PreparedJob.checked("bank-sync", "sync", payload, options)
    plain = records.PreparedJob("bank-sync", "sync", payload, options)
    assert checked == plain and checked.trace_metadata is None
    assert checked.__dict__["data_json"] == payload.wire_json()  # made at once
    assert "data_json" not in plain.__dict__  # made on first read, then kept
    assert plain.data_json == checked.data_json and "data_json" in plain.__dict__
    assert plain.wire == {"userId": "u1", "accountId": "a1", "syncType": "full"}
    assert plain.wire is plain.wire
    assert isinstance(records.PreparedJob.__dict__["wire"], records._kept)
