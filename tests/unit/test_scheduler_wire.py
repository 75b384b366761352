"""The Redis side's scheduler step without Redis: what a fetched run sends to
``updateJobScheduler``, and which runs take the lean job path."""

from __future__ import annotations

import json

from queuekit.redis.jobs import LeanJob
from queuekit.redis.schedules import next_run_opts

NOW = 1_800_000_000_000


def test_a_run_of_a_scheduler_is_lean_and_knows_its_scheduler() -> None:
    raw = {"name": "sync", "data": "{}", "rjk": "nightly",
           "opts": json.dumps({"attempts": 3, "repeat": {"every": 1000, "count": 1}})}
    assert LeanJob.fits(raw)
    assert LeanJob(None, raw, "repeat:nightly:1", "t").repeatJobKey == "nightly"  # type: ignore[arg-type]
    assert not LeanJob.fits({**raw, "parentKey": "p"})


def test_every_next_run_options_count_the_iteration() -> None:
    found = next_run_opts("s", {"attempts": 2, "repeat": {"every": 1000, "count": 1}},
                          NOW, NOW + 5)
    assert found is not None
    millis, opts = found
    assert millis == NOW + 5  # the script recomputes `every` runs itself
    assert opts["repeat"] == {"every": 1000, "count": 2}
    assert (opts["repeatJobKey"], opts["attempts"]) == ("s", 2)


def test_limit_and_end_date_stop_before_the_script() -> None:
    assert next_run_opts("s", {"repeat": {"every": 10, "limit": 3, "count": 3}},
                         NOW, NOW) is None
    assert next_run_opts("s", {"repeat": {"every": 10, "limit": 3, "count": 2}},
                         NOW, NOW) is not None
    # The next run would be due after the end date: none (bullmq's Lua would add it).
    assert next_run_opts("s", {"repeat": {"every": 10, "endDate": NOW + 5}},
                         NOW, NOW + 1) is None
    assert next_run_opts("s", {"repeat": {"every": 10, "endDate": NOW - 1}},
                         NOW - 20, NOW) is None


def test_pattern_next_run_is_computed_here_in_its_zone() -> None:
    found = next_run_opts("s", {"repeat": {"pattern": "0 3 * * *", "tz": "Europe/Berlin",
                                           "count": 4}, "prevMillis": NOW}, NOW, NOW)
    assert found is not None
    millis, opts = found
    assert millis > NOW and opts["jobId"] == f"repeat:s:{millis}"
    assert opts["prevMillis"] == millis and opts["repeat"]["count"] == 5
