"""What the command line and the demo need of a plugin host, as a protocol.

The composition root (``containers/``) implements it; the library only describes it, so
``queuekit.cli`` and ``queuekit.runtime`` never import the container.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from queuekit.runtime.plugins import PluginSet, ProcessorBinding
from queuekit.service import QueueService
from queuekit.settings import QueuekitSettings

#: Checks the loaded plugins before any connection is made (raises to refuse).
PluginCheck = Callable[[PluginSet], object]


class Host(Protocol):
    """An application with its plugins loaded and its queue service started."""

    @property
    def plugins(self) -> PluginSet:
        """The plugins of this host."""

    @property
    def service(self) -> QueueService:
        """The started queue service."""

    async def processors(self, queues: Collection[str]) -> list[ProcessorBinding]:
        """The plugins' processors of ``queues``, built with their dependencies."""

    async def get(self, name: str) -> object:
        """A provider or plugin service by name (``banking_service``, ``queue_service``)."""


class HostFactory(Protocol):
    """Opens a :class:`Host` for ``settings``; on exit every resource is shut down.

    With ``workers=True`` the host also starts the workers its configuration enables
    (the application's full lifespan); otherwise it starts none.
    """

    def __call__(self, settings: QueuekitSettings, check: PluginCheck | None = None, *,
                 workers: bool = False) -> AbstractAsyncContextManager[Host]: ...
