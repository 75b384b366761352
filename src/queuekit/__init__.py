"""queuekit: injectable background jobs on BullMQ and Redis.

The public surface is listed in ``__all__`` (a test keeps it complete and sorted).
"""

from queuekit.breaker import AsyncCircuitBreaker
from queuekit.connection import QueueConnection, ServerInfo
from queuekit.errors import (
    CircuitOpenError,
    ConfigurationError,
    FieldError,
    JobNotFoundError,
    JobTimeoutError,
    PayloadValidationError,
    QueuekitError,
    QueueUnavailableError,
    RateLimitExceededError,
    SensitiveDataError,
    ServiceClosedError,
    UnknownQueueError,
    UnrecoverableError,
    WorkerError,
)
from queuekit.jobs import JobContext, JobInfo, JobOptions, JobResult, JobState
from queuekit.payloads import (
    AnalyticsJobData,
    BankSyncJobData,
    JobPayload,
    NotificationJobData,
    ReportJobData,
)
from queuekit.queues import QueueName, QueueRegistry
from queuekit.redis_service import RedisQueueService
from queuekit.service import HealthReport, NewJob, Processor, QueueService, QueueWorker
from queuekit.settings import (
    BackoffSettings,
    KeepJobs,
    QueuekitSettings,
    load_settings,
)

__version__ = "0.1.0"

__all__ = [
    "AnalyticsJobData",
    "AsyncCircuitBreaker",
    "BackoffSettings",
    "BankSyncJobData",
    "CircuitOpenError",
    "ConfigurationError",
    "FieldError",
    "HealthReport",
    "JobContext",
    "JobInfo",
    "JobNotFoundError",
    "JobOptions",
    "JobPayload",
    "JobResult",
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
    "RedisQueueService",
    "ReportJobData",
    "SensitiveDataError",
    "ServerInfo",
    "ServiceClosedError",
    "UnknownQueueError",
    "UnrecoverableError",
    "WorkerError",
    "__version__",
    "load_settings",
]
