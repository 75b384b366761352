"""The in-memory backend: the ``QueueService`` contract in one process, on a virtual clock.

A real backend (the demo's embedded default, ``backend: memory``) and the twin that
application tests override the Redis service with; :mod:`queuekit.testing` re-exports it.
"""

from queuekit.memory.clock import VirtualClock
from queuekit.memory.service import InMemoryQueueService
from queuekit.memory.worker import MemoryWorker

__all__ = ["InMemoryQueueService", "MemoryWorker", "VirtualClock"]
