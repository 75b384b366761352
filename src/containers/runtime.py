"""Typed helpers to drive a container's async resources.

dependency-injector's stubs type ``init_resources()`` as ``Awaitable[None] | None`` and a
provider call as the provided type even when it returns an awaitable; these helpers keep
application code (and ``mypy --strict``) simple: ``async with lifespan(app): ...``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar, overload

from dependency_injector import containers, providers

T = TypeVar("T")


async def start(container: containers.Container) -> None:
    """Initialise every resource of ``container`` (Redis check, workers ...)."""
    result = container.init_resources()
    if result is not None:
        await result


async def stop(container: containers.Container) -> None:
    """Shut every resource down: workers, then the queue service, then the Redis pools."""
    result = container.shutdown_resources()
    if result is not None:
        await result


@overload
async def resolve(provider: providers.Provider[Coroutine[Any, Any, T]]) -> T: ...


@overload
async def resolve(provider: providers.Provider[T]) -> T: ...


async def resolve(provider: providers.Provider[Any]) -> Any:
    """The provided object, awaited when the provider is asynchronous."""
    value: Any = provider()
    if inspect.isawaitable(value):
        value = await value
    return value


@asynccontextmanager
async def lifespan(container: containers.Container) -> AsyncIterator[containers.Container]:
    """Start the container's resources on entry and stop them on exit."""
    await start(container)
    try:
        yield container
    finally:
        await stop(container)
