"""The composition root: dependency-injector containers (nothing else imports DI)."""

from containers.application import ApplicationContainer
from containers.shared import SharedContainer

__all__ = ["ApplicationContainer", "SharedContainer"]
