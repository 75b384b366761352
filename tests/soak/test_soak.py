"""The short chaos soak (5,000 jobs, about a minute): ``make soak`` runs the long one.

Python and Node BullMQ producers, three ``queuekit worker`` processes with one SIGKILLed
and restarted every 3 s, two ``kill -9`` restarts of a durable Redis: every acknowledged
job ends completed (or failed on purpose), duplicates stay within what the faults explain,
and the long-lived workers' memory is flat.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.soak.soak import SoakConfig, failures, soak

log = logging.getLogger("tests.soak")

SHORT = SoakConfig(jobs=5_000, rate=100.0, deadline=200.0)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_short_soak_loses_no_acknowledged_job(tmp_path: Path) -> None:
    result = await soak(SHORT, tmp_path)
    log.warning("%s", result.summary())

    assert failures(result) == [], result.summary()
    assert result.jobs == SHORT.jobs  # every add was acknowledged in the end
    assert result.completed + result.failed_on_purpose == SHORT.jobs
    assert result.failed_on_purpose == 25  # n % 200 == 13 of 0..4999
    assert result.redis_restarts == 2
    # One kill every 3 s over ~50 s of production (a loaded machine may start late).
    assert result.kills >= 10, result.summary()
