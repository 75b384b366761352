"""queuekit: injectable background jobs on BullMQ and Redis.

The public surface is listed in ``__all__`` (a test keeps it complete and sorted). The
Redis names (``RedisQueueService``, ``QueueConnection``, ``ServerInfo``,
``AsyncCircuitBreaker``) are imported on first use, so a program that only uses the
in-memory backend never loads bullmq.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from queuekit.errors import (
    AttemptTimeoutError,
    CircuitOpenError,
    ConfigurationError,
    FieldError,
    JobActiveError,
    JobCancelledError,
    JobNotFoundError,
    JobTimeoutError,
    PayloadValidationError,
    QueuekitError,
    QueueUnavailableError,
    RateLimitedError,
    RateLimitExceededError,
    SensitiveDataError,
    ServiceClosedError,
    UnknownQueueError,
    UnrecoverableError,
    WorkerError,
)
from queuekit.flows import FlowJob, FlowNode
from queuekit.jobs import Deduplication, JobContext, JobInfo, JobOptions, JobResult, JobState
from queuekit.payloads import (
    AnalyticsJobData,
    BankSyncJobData,
    JobPayload,
    NotificationJobData,
    ReportJobData,
)
from queuekit.processors import Processor
from queuekit.queues import QueueName, QueueRegistry
from queuekit.records import HealthReport, NewJob
from queuekit.schedules import JobSchedulerInfo
from queuekit.service import QueueService
from queuekit.settings import (
    BackoffSettings,
    KeepJobs,
    QueuekitSettings,
    ScheduleSettings,
    load_settings,
)
from queuekit.worker import QueueWorker

if _TYPE_CHECKING:
    from queuekit.redis import AsyncCircuitBreaker, QueueConnection, RedisQueueService, ServerInfo

_REDIS_NAMES = frozenset({"AsyncCircuitBreaker", "QueueConnection", "RedisQueueService",
                          "ServerInfo"})


def __getattr__(name: str) -> _Any:
    if name in _REDIS_NAMES:
        import queuekit.redis

        return getattr(queuekit.redis, name)
    raise AttributeError(f"module 'queuekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _REDIS_NAMES)

__version__ = "0.1.0"

__all__ = [
    "AnalyticsJobData",
    "AsyncCircuitBreaker",
    "AttemptTimeoutError",
    "BackoffSettings",
    "BankSyncJobData",
    "CircuitOpenError",
    "ConfigurationError",
    "Deduplication",
    "FieldError",
    "FlowJob",
    "FlowNode",
    "HealthReport",
    "JobActiveError",
    "JobCancelledError",
    "JobContext",
    "JobInfo",
    "JobNotFoundError",
    "JobOptions",
    "JobPayload",
    "JobResult",
    "JobSchedulerInfo",
    "JobState",
    "JobTimeoutError",
    "KeepJobs",
    "NewJob",
    "NotificationJobData",
    "PayloadValidationError",
    "Processor",
    "QueueConnection",
    "QueueName",
    "QueueRegistry",
    "QueueService",
    "QueueUnavailableError",
    "QueueWorker",
    "QueuekitError",
    "QueuekitSettings",
    "RateLimitExceededError",
    "RateLimitedError",
    "RedisQueueService",
    "ReportJobData",
    "ScheduleSettings",
    "SensitiveDataError",
    "ServerInfo",
    "ServiceClosedError",
    "UnknownQueueError",
    "UnrecoverableError",
    "WorkerError",
    "__version__",
    "load_settings",
]
