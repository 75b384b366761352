"""Test helpers: the in-memory ``QueueService`` and its virtual clock."""

from queuekit.testing.clock import VirtualClock
from queuekit.testing.memory import InMemoryQueueService, MemoryWorker

__all__ = ["InMemoryQueueService", "MemoryWorker", "VirtualClock"]
