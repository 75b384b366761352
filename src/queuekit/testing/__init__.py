"""Test helpers: the in-memory ``QueueService`` and its virtual clock.

The same objects as :mod:`queuekit.memory`, under the name application tests import.
"""

from queuekit.memory import InMemoryQueueService, MemoryWorker, VirtualClock

__all__ = ["InMemoryQueueService", "MemoryWorker", "VirtualClock"]
