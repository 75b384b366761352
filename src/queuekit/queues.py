"""Queue names and the registry that maps each queue to its payload model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import StrEnum

from queuekit.errors import ConfigurationError, UnknownQueueError
from queuekit.payloads import (
    AnalyticsJobData,
    BankSyncJobData,
    JobPayload,
    NotificationJobData,
    ReportJobData,
)


class QueueName(StrEnum):
    """The queues of the shared module. Plugins may register other names."""

    BANK_SYNC = "bank-sync"
    NOTIFICATIONS = "notifications"
    REPORTS = "reports"
    ANALYTICS = "analytics"


DEFAULT_PAYLOAD_MODELS: Mapping[str, type[JobPayload]] = {
    QueueName.BANK_SYNC: BankSyncJobData,
    QueueName.NOTIFICATIONS: NotificationJobData,
    QueueName.REPORTS: ReportJobData,
    QueueName.ANALYTICS: AnalyticsJobData,
}


def _check_name(name: str) -> str:
    if not name or ":" in name or name != name.strip():
        raise ConfigurationError(
            f"queue name {name!r} is invalid: it must be non-empty, without ':' or spaces "
            "at either end"
        )
    return name


class QueueRegistry:
    """Which payload model each queue takes.

    Starts with the four shared queues; plugins call :meth:`register` for their own.
    """

    def __init__(self, models: Mapping[str, type[JobPayload]] | None = None) -> None:
        self._models: dict[str, type[JobPayload]] = {}
        for name, model in (DEFAULT_PAYLOAD_MODELS if models is None else models).items():
            self.register(name, model)

    def register(self, name: str, model: type[JobPayload]) -> None:
        """Register ``model`` as the payload of queue ``name``.

        Registering the same model twice is allowed; another model for a known name is not.
        """
        name = _check_name(str(name))
        if not (isinstance(model, type) and issubclass(model, JobPayload)):
            raise ConfigurationError(
                f"payload model for queue {name!r} must subclass queuekit.JobPayload"
            )
        known = self._models.get(name)
        if known is not None and known is not model:
            raise ConfigurationError(
                f"queue {name!r} already takes {known.__name__}; cannot register {model.__name__}"
            )
        self._models[name] = model

    def model_for(self, name: str) -> type[JobPayload]:
        """The payload model of ``name``; :class:`UnknownQueueError` when none is registered."""
        try:
            return self._models[str(name)]
        except KeyError:
            raise UnknownQueueError(
                f"queue {str(name)!r} has no payload model; register one with "
                "QueueRegistry.register(name, Model) (known queues: "
                f"{', '.join(sorted(self._models))})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return str(name) in self._models

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._models))

    def __len__(self) -> int:
        return len(self._models)
