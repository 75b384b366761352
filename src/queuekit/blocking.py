"""The blocking twins of :class:`~queuekit.jobs.JobContext`'s actions, for plain-``def``
processors (which run off the event loop, in a thread or process: :mod:`queuekit.offload`).

``JobContext`` inherits :class:`BlockingJobMethods`; the context a plain-def processor
receives carries a reporter that implements :class:`BlockingJobReporter` (the thread pool
hops onto the worker's loop, the process pool sends the update back to the worker).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from queuekit.errors import WorkerError


@runtime_checkable
class BlockingJobReporter(Protocol):
    """The reporter of a plain-def processor's context."""

    def update_progress_sync(self, progress: int | Mapping[str, Any]) -> None: ...

    def log_sync(self, text: str) -> None: ...


class BlockingJobMethods:
    """``update_progress_sync`` and ``log_sync``: what a plain-def processor calls."""

    __slots__ = ()

    def update_progress_sync(self, progress: int | Mapping[str, Any]) -> None:
        """``update_progress`` for a plain ``def`` processor: returns once the worker
        stored it (thread pool) or once it is sent to the worker (process pool)."""
        self._blocking().update_progress_sync(progress)

    def log_sync(self, text: str) -> None:
        """``log`` for a plain ``def`` processor (see :meth:`update_progress_sync`)."""
        self._blocking().log_sync(str(text))

    def _blocking(self) -> BlockingJobReporter:
        reporter = getattr(self, "_reporter", None)  # JobContext's
        if not isinstance(reporter, BlockingJobReporter):
            raise WorkerError(
                "update_progress_sync / log_sync are for plain-def processors, which run "
                "off the event loop; an async processor awaits job.update_progress / job.log"
            )
        return reporter
