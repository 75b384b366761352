"""queuekit's cron step (both backends use it), against zoneinfo wall-clock arithmetic."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from queuekit.schedules import next_cron_run

BERLIN = ZoneInfo("Europe/Berlin")


def ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def test_a_daily_pattern_stays_on_the_wall_clock_for_a_year_of_dst_changes() -> None:
    at = ms(dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    day = dt.date(2027, 1, 1)
    for _ in range(365):
        at = next_cron_run("0 3 * * *", "Europe/Berlin", at)
        assert at == ms(dt.datetime(day.year, day.month, day.day, 3, tzinfo=BERLIN))
        day += dt.timedelta(days=1)


def test_six_fields_have_seconds_first_and_no_tz_is_utc() -> None:
    base = ms(dt.datetime(2027, 5, 1, 12, 0, 0, tzinfo=dt.UTC))
    assert next_cron_run("30 * * * * *", None, base) == base + 30_000
    assert next_cron_run("0 13 * * *", None, base) == base + 3600_000


def test_start_date_moves_the_base_and_the_result_is_strictly_later() -> None:
    base = ms(dt.datetime(2027, 5, 1, 3, tzinfo=BERLIN))
    assert next_cron_run("0 3 * * *", "Europe/Berlin", base) == ms(
        dt.datetime(2027, 5, 2, 3, tzinfo=BERLIN))
    start = ms(dt.datetime(2027, 6, 1, tzinfo=dt.UTC))
    assert next_cron_run("0 3 * * *", "Europe/Berlin", base, start) == ms(
        dt.datetime(2027, 6, 1, 3, tzinfo=BERLIN))
