"""Per-user addition windows in process memory, on the service's (virtual) clock."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping

from queuekit.ratelimit import RateLimiter
from queuekit.settings import RateLimit


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
