"""The public surface: complete and sorted ``__all__``, one error hierarchy."""

from __future__ import annotations

import inspect

import queuekit
import queuekit.testing
from queuekit import errors


def test_all_is_sorted_and_complete() -> None:
    assert queuekit.__all__ == sorted(queuekit.__all__)
    public = {name for name in dir(queuekit)
              if not name.startswith("_") and not inspect.ismodule(getattr(queuekit, name))}
    assert public == set(queuekit.__all__) - {"__version__"}


def test_every_error_is_exported_and_derives_from_queuekit_error() -> None:
    classes = [c for c in vars(errors).values()
               if inspect.isclass(c) and issubclass(c, Exception)]
    for cls in classes:
        assert issubclass(cls, errors.QueuekitError), cls
        assert cls.__name__ in queuekit.__all__, cls
        assert cls.__doc__, cls


def test_design_contract_names_exist() -> None:
    for name in ("QueueService", "QueueName", "JobOptions", "JobInfo", "JobContext",
                 "JobResult", "BankSyncJobData", "NotificationJobData", "ReportJobData",
                 "AnalyticsJobData", "QueuekitError", "UnrecoverableError"):
        assert hasattr(queuekit, name)
    assert inspect.isclass(queuekit.testing.InMemoryQueueService)
    assert queuekit.testing.__all__ == sorted(queuekit.testing.__all__)
