"""``queuekit schedules`` on real Redis: the table, --json and remove."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from containers.cli import main
from queuekit import QueueName, RedisQueueService, load_settings
from tests.support.configs import write_config
from tests.support.redis_server import RedisServer

SYNC = {"userId": "u1", "accountId": "a1", "syncType": "full"}


async def _seed(url: str, prefix: str) -> int:
    qs = await RedisQueueService.connect(load_settings(redis={"url": url, "prefix": prefix}))
    try:
        await qs.upsert_job_scheduler(QueueName.BANK_SYNC, "six-hourly", every=6 * 3600_000,
                                      data=SYNC, limit=10)
        info = await qs.upsert_job_scheduler(QueueName.REPORTS, "nightly", pattern="0 3 * * *",
                                             tz="Europe/Berlin",
                                             data={"userId": "u1", "reportType": "custom",
                                                   "startDate": "2027-01-01",
                                                   "endDate": "2027-01-31"})
        assert info.next_run_at is not None
        return info.next_run_at
    finally:
        await qs.close()


def test_list_and_remove(redis_server: RedisServer, key_prefix: str, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    nightly_next = asyncio.run(_seed(redis_server.url, key_prefix))
    config = str(write_config(tmp_path / "c.yaml", redis_server.url, key_prefix, []))

    assert main(["schedules", "--config", config]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["QUEUE", "ID", "EVERY/PATTERN", "TZ", "NEXT", "RUN",
                                "ITERATIONS"]
    rows = {line.split()[1]: line for line in table[1:]}
    assert set(rows) == {"six-hourly", "nightly"}
    assert "21600000 ms" in rows["six-hourly"] and "1/10" in rows["six-hourly"]
    assert "0 3 * * *" in rows["nightly"] and "Europe/Berlin" in rows["nightly"]

    assert main(["schedules", "reports", "--json", "--config", config]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["id"], row["pattern"], row["tz"], row["next_run_at"], row["iterations"]) == (
        "nightly", "0 3 * * *", "Europe/Berlin", nightly_next, 1)

    assert main(["schedules", "remove", "reports", "nightly", "--config", config]) == 0
    assert "job scheduler nightly of reports removed" in capsys.readouterr().out
    assert main(["schedules", "remove", "reports", "nightly", "--config", config]) == 1
    assert "not found" in capsys.readouterr().out
    assert main(["schedules", "reports", "--config", config]) == 0
    assert capsys.readouterr().out.strip() == "no job schedulers on reports"


def test_remove_needs_a_queue_and_an_id(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["schedules", "remove", "reports"])
    assert exit_info.value.code == 2
    assert "schedules remove QUEUE ID" in capsys.readouterr().err
