"""Payload safety: payloads carry ids, never secrets."""

from __future__ import annotations

import datetime as dt
import re
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from queuekit.errors import FieldError, SensitiveDataError
from queuekit.payloads import JobPayload

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
        # Payloads repeat the same few keys: remember each verdict (bounded).
        self._seen: dict[str, bool] = {}
        self._dynamic: dict[type[JobPayload], tuple[str, ...] | bool] = {}

    def _matches(self, key: str) -> bool:
        verdict = self._seen.get(key)
        if verdict is None:
            norm = normalise_key(key)
            verdict = any(norm.endswith(k) for k in self.keys)
            if len(self._seen) < 10_000:
                self._seen[key] = verdict
        return verdict

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

    def _clean(self, value: Any) -> bool:
        """True when no key at any depth looks like a secret (the fast, common answer)."""
        if isinstance(value, Mapping):
            for key, item in value.items():
                if self._matches(str(key)):
                    return False
                if isinstance(item, Mapping | list | tuple) and not self._clean(item):
                    return False
        elif isinstance(value, list | tuple):
            return all(self._clean(item) for item in value
                       if isinstance(item, Mapping | list | tuple))
        return True

    def check_keys(self, keys: Iterable[str]) -> bool:
        """True when none of ``keys`` looks like a secret."""
        return not any(self._matches(key) for key in keys)

    def check(self, payload: Mapping[str, Any], subject: str) -> None:
        """Raise :class:`SensitiveDataError` naming every secret-looking key in ``payload``."""
        if self._clean(payload):
            return
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

    def check_payload(self, model: type[JobPayload], payload: JobPayload,
                      subject: str) -> None:
        """:meth:`check` a validated payload of ``model``, walking only the fields whose
        type can hold arbitrary keys (the others were checked once, by name)."""
        dynamic = self._dynamic.get(model)
        if dynamic is None:
            dynamic = self._dynamic[model] = dynamic_fields(model, self)
        if not dynamic:
            return
        wire = payload.to_wire()
        if isinstance(dynamic, tuple):
            self.check({k: wire[k] for k in dynamic if k in wire}, subject)
        else:  # a field's own name looks like a secret: the whole payload is named
            self.check(wire, subject)


_SCALARS = (str, int, float, bool, dt.date, dt.datetime, type(None))


def dynamic_fields(model: type[JobPayload],
                   policy: SensitiveKeyPolicy) -> tuple[str, ...] | bool:
    """Which wire keys of ``model`` must be walked for secret-looking keys.

    A field whose type is a scalar (or a Literal of scalars) can only appear under its own
    name, checked here once; ``True`` means walk the whole payload (a field name itself
    looks like a secret, so every payload of the model is refused with the usual error).
    """
    names = [info.alias or name for name, info in model.model_fields.items()]
    if not policy.check_keys(names):
        return True
    dynamic = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        args = typing.get_args(annotation)
        scalar = annotation in _SCALARS or (
            bool(args) and all(isinstance(a, _SCALARS) or a in _SCALARS for a in args))
        if not scalar:
            dynamic.append(info.alias or name)
    return tuple(dynamic)
