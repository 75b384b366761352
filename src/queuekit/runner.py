"""The worker runner, under the import path earlier releases documented
(``from queuekit.runner import serve``); the module is :mod:`queuekit.runtime.runner`."""

from queuekit.runtime.runner import STOP_SIGNALS, serve, start_workers

__all__ = ["STOP_SIGNALS", "serve", "start_workers"]
