"""Per-user addition windows in Redis sorted sets, checked and updated atomically."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from queuekit.ratelimit import RateLimiter
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
