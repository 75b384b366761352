"""Payload safety: payloads carry ids, never secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from queuekit.errors import FieldError, SensitiveDataError

_SEPARATORS = re.compile(r"[^0-9a-z]")


def normalise_key(key: str) -> str:
    """``API-Key``, ``api_key`` and ``apiKey`` all become ``apikey``."""
    return _SEPARATORS.sub("", key.lower())


class SensitiveKeyPolicy:
    """Refuses payload keys that look like secrets, at any depth.

    A key matches when, case and separators aside, it is one of the listed names or ends
    with one (``githubToken``, ``db_password``), so near-misses cannot slip through.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys: tuple[str, ...] = tuple(sorted({normalise_key(k) for k in keys if k}))

    def _matches(self, key: str) -> bool:
        norm = normalise_key(key)
        return any(norm == k or norm.endswith(k) for k in self.keys)

    def _walk(self, value: Any, path: str) -> Iterator[str]:
        if isinstance(value, Mapping):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if self._matches(str(key)):
                    yield child
                yield from self._walk(item, child)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                yield from self._walk(item, f"{path}[{index}]")

    def check(self, payload: Mapping[str, Any], subject: str) -> None:
        """Raise :class:`SensitiveDataError` naming every secret-looking key in ``payload``."""
        found = list(self._walk(payload, ""))
        if found:
            raise SensitiveDataError(
                subject,
                [
                    FieldError(
                        path,
                        "looks like a secret; payloads must carry ids and load secrets "
                        "inside the processor",
                    )
                    for path in found
                ],
            )
