"""Per-user rate limits on job additions: a sliding window per (queue, user)."""

from __future__ import annotations

import abc
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from queuekit.errors import RateLimitExceededError
from queuekit.settings import RateLimit

#: Admits ``n`` additions to each window in KEYS, all or none, atomically.
#: ARGV: window ms, max, token, then one count per key. Returns {0} when admitted, or
#: {index of the first full key (1-based), ms until it has room}.
ADMIT_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local token = ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[3 + i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local used = redis.call('ZCARD', key)
  if used + n > limit then
    local free_at = now + window
    local need = used + n - limit
    if need <= used then
      local entry = redis.call('ZRANGE', key, need - 1, need - 1, 'WITHSCORES')
      free_at = tonumber(entry[2]) + window
    end
    return {i, math.max(free_at - now, 1)}
  end
end
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[3 + i])
  for j = 1, n do
    redis.call('ZADD', key, now, token .. ':' .. i .. ':' .. j)
  end
  redis.call('PEXPIRE', key, window)
end
return {0}
"""


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


class RedisRateLimiter(RateLimiter):
    """Windows in Redis sorted sets, checked and updated in one Lua script."""

    def __init__(self, limits: Mapping[str, RateLimit], client: Any,
                 key: Callable[[str, str], str]) -> None:
        super().__init__(limits)
        self._script = client.register_script(ADMIT_SCRIPT)
        self._key = key

    async def _admit(self, queue: str, limit: RateLimit, users: list[str],
                     counts: list[int]) -> tuple[str, int] | None:
        result = await self._script(
            keys=[self._key(queue, user) for user in users],
            args=[limit.duration, limit.max, uuid.uuid4().hex, *counts],
        )
        index = int(result[0])
        if index == 0:
            return None
        return users[index - 1], int(result[1])


class MemoryRateLimiter(RateLimiter):
    """Windows in process memory, on the service's (virtual) clock."""

    def __init__(self, limits: Mapping[str, RateLimit], now_ms: Callable[[], int]) -> None:
        super().__init__(limits)
        self._now_ms = now_ms
        self._windows: dict[tuple[str, str], deque[int]] = {}

    async def _admit(self, queue: str, limit: RateLimit, users: list[str],
                     counts: list[int]) -> tuple[str, int] | None:
        now = self._now_ms()
        windows = []
        for user, n in zip(users, counts, strict=True):
            window = self._windows.setdefault((queue, user), deque())
            while window and window[0] <= now - limit.duration:
                window.popleft()
            if len(window) + n > limit.max:
                need = len(window) + n - limit.max
                free_at = window[need - 1] + limit.duration if need <= len(window) else (
                    now + limit.duration)
                return user, max(free_at - now, 1)
            windows.append((window, n))
        for window, n in windows:
            window.extend([now] * n)
        return None
