"""The behaviour suite's core, run unchanged on a real Redis Cluster (``cluster: true``).

The tests are the ones of ``tests/behaviour``; ``conftest.py`` here points their
``service`` fixture at the loopback cluster, for both worker engines.
"""

from __future__ import annotations

from tests.behaviour.test_contract import (
    test_bulk_add_is_all_or_nothing,
    test_counts_have_every_state,
    test_custom_job_id_is_added_once,
    test_delayed_job_waits_for_its_delay,
    test_exponential_backoff_shows_in_timestamps,
    test_failing_job_is_retried_then_completes,
    test_injected_service_job_is_processed_and_read_back,
    test_job_fails_after_its_last_attempt,
    test_priorities_order_processing,
    test_progress_is_visible_while_the_job_runs,
    test_unrecoverable_error_fails_without_more_attempts,
)
from tests.behaviour.test_events_and_limits import (
    test_failed_attempts_carry_their_number_and_retrying_follows,
    test_final_failure_event,
    test_per_user_rate_limit,
    test_subscriber_sees_progress_in_order_then_completed,
)
from tests.behaviour.test_monitoring import test_jobs_are_listed_retried_and_workers_counted

__all__ = [
    "test_bulk_add_is_all_or_nothing",
    "test_counts_have_every_state",
    "test_custom_job_id_is_added_once",
    "test_delayed_job_waits_for_its_delay",
    "test_exponential_backoff_shows_in_timestamps",
    "test_failed_attempts_carry_their_number_and_retrying_follows",
    "test_failing_job_is_retried_then_completes",
    "test_final_failure_event",
    "test_injected_service_job_is_processed_and_read_back",
    "test_job_fails_after_its_last_attempt",
    "test_jobs_are_listed_retried_and_workers_counted",
    "test_per_user_rate_limit",
    "test_priorities_order_processing",
    "test_progress_is_visible_while_the_job_runs",
    "test_subscriber_sees_progress_in_order_then_completed",
    "test_unrecoverable_error_fails_without_more_attempts",
]
