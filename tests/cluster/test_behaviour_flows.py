"""Flows, timeouts and cancel_job from ``tests/behaviour``, on the cluster.

Flows across queues need one slot for the whole tree: these run with
``cluster_slots: shared`` (``test_flows.py`` here shows a slot per queue refusing them).
cancel_job reaches running workers over (classic) pub/sub, which a cluster broadcasts.
"""

from __future__ import annotations

from typing import Any

import pytest

from queuekit import QueuekitSettings, load_settings
from tests.behaviour.test_flows import (
    test_cancelling_a_waiting_child_releases_its_parent,
    test_delayed_and_prioritized_children_and_a_delayed_parent,
    test_fail_parent_on_failure_fails_the_parent_with_the_childs_key,
    test_get_flow_of_a_missing_job_is_none,
    test_ignore_dependency_on_failure_runs_the_parent_without_the_value,
    test_invalid_child_writes_nothing_and_names_its_path,
    test_nested_flow_runs_bottom_up,
    test_parent_runs_after_children_on_two_queues_and_reads_their_values,
    test_plain_job_has_no_children_values,
    test_remove_dependency_on_failure_runs_the_parent_and_forgets_the_child,
    test_without_an_option_a_failed_child_leaves_the_parent_waiting,
)
from tests.behaviour.test_timeouts import (
    test_attempt_over_its_timeout_fails_at_the_timeout_and_is_retried,
    test_bad_timeout_is_refused_naming_the_field,
    test_cancel_of_a_finished_or_unknown_job_does_nothing,
    test_cancel_of_a_processor_waiting_on_a_thread_fails_it_at_once,
    test_cancel_of_a_running_job_fails_it_without_retry,
    test_cancel_of_a_waiting_job_removes_it,
    test_cancel_reaches_a_processor_that_polls_cancelled,
    test_processor_that_blocks_the_loop_past_its_timeout_fails,
    test_processor_that_cancels_its_own_job_fails_it,
    test_processor_that_swallows_the_timeout_still_fails,
    test_timeout_on_every_attempt_fails_the_job_saying_so,
)
from tests.conftest import SettingsFactory
from tests.support.redis_cluster import RedisClusterServers

__all__ = [
    "test_attempt_over_its_timeout_fails_at_the_timeout_and_is_retried",
    "test_bad_timeout_is_refused_naming_the_field",
    "test_cancel_of_a_finished_or_unknown_job_does_nothing",
    "test_cancel_of_a_processor_waiting_on_a_thread_fails_it_at_once",
    "test_cancel_of_a_running_job_fails_it_without_retry",
    "test_cancel_of_a_waiting_job_removes_it",
    "test_cancel_reaches_a_processor_that_polls_cancelled",
    "test_cancelling_a_waiting_child_releases_its_parent",
    "test_delayed_and_prioritized_children_and_a_delayed_parent",
    "test_fail_parent_on_failure_fails_the_parent_with_the_childs_key",
    "test_get_flow_of_a_missing_job_is_none",
    "test_ignore_dependency_on_failure_runs_the_parent_without_the_value",
    "test_invalid_child_writes_nothing_and_names_its_path",
    "test_nested_flow_runs_bottom_up",
    "test_parent_runs_after_children_on_two_queues_and_reads_their_values",
    "test_plain_job_has_no_children_values",
    "test_processor_that_blocks_the_loop_past_its_timeout_fails",
    "test_processor_that_cancels_its_own_job_fails_it",
    "test_processor_that_swallows_the_timeout_still_fails",
    "test_remove_dependency_on_failure_runs_the_parent_and_forgets_the_child",
    "test_timeout_on_every_attempt_fails_the_job_saying_so",
    "test_without_an_option_a_failed_child_leaves_the_parent_waiting",
]


@pytest.fixture
def make_settings(redis_cluster: RedisClusterServers, key_prefix: str) -> SettingsFactory:
    """Cluster settings with every queue in one slot (``cluster_slots: shared``)."""

    def factory(**overrides: Any) -> QueuekitSettings:
        redis = {"url": redis_cluster.url, "prefix": key_prefix, "cluster": True,
                 "cluster_slots": "shared", **overrides.pop("redis", {})}
        worker = {"drain_delay": 5.0, **overrides.pop("worker", {})}
        return load_settings(redis=redis, worker=worker, **overrides)

    return factory
