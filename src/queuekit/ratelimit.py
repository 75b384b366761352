"""Per-user rate limits on job additions: a sliding window per (queue, user).

The backends count the windows: in Redis (one Lua script, across processes) or in
process memory on the service's clock.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from queuekit.errors import RateLimitExceededError
from queuekit.settings import RateLimit


def users_of(payloads: Sequence[Any]) -> Counter[str]:
    """How many of ``payloads`` each user adds (payloads without ``user_id`` are not counted)."""
    counts: Counter[str] = Counter()
    for payload in payloads:
        user = getattr(payload, "user_id", None)
        if isinstance(user, str) and user:
            counts[user] += 1
    return counts


class RateLimiter(abc.ABC):
    """Refuses additions beyond a queue's per-user limit with ``RateLimitExceededError``."""

    def __init__(self, limits: Mapping[str, RateLimit]) -> None:
        self.limits = dict(limits)

    async def admit(self, queue: str, payloads: Sequence[Any]) -> None:
        """Count ``payloads`` against their users' windows, or refuse them all."""
        limit = self.limits.get(queue)
        if limit is None:
            return
        counts = users_of(payloads)
        if not counts:
            return
        users = sorted(counts)
        refused = await self._admit(queue, limit, users, [counts[u] for u in users])
        if refused is not None:
            user, wait_ms = refused
            raise RateLimitExceededError(queue, user, limit.max, limit.duration,
                                         retry_after=wait_ms / 1000)

    @abc.abstractmethod
    async def _admit(self, queue: str, limit: RateLimit, users: list[str],
                     counts: list[int]) -> tuple[str, int] | None:
        """Admit all or nothing; return (refused user, ms to wait) when refused."""
