"""The composition root: dependency-injector containers (nothing else imports DI)."""

from containers.application import ApplicationContainer
from containers.runtime import lifespan, resolve, start, stop
from containers.shared import SharedContainer

__all__ = ["ApplicationContainer", "SharedContainer", "lifespan", "resolve", "start", "stop"]
