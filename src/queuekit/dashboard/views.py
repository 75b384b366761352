"""What the dashboard pages show, read through the ``QueueService`` contract only.

Optional parts are duck-typed, so the dashboard shows what a service offers: job logs
(``get_job_logs``), pause state (``is_paused``), job schedulers (``get_job_schedulers``)
and flows (``get_flow``). Payload and result keys that look like secrets (the service's
``security.sensitive_keys``) are masked before anything is rendered.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from queuekit.jobs import COUNT_STATES, JobInfo
from queuekit.security import SensitiveKeyPolicy
from queuekit.service import QueueService

MASK = "••••••"


def masked(value: Any, policy: SensitiveKeyPolicy) -> Any:
    """``value`` as JSON-ready data with every secret-looking key's value masked."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True)
    if isinstance(value, Mapping):
        return {str(k): MASK if not policy.check_keys([str(k)]) else masked(v, policy)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item, policy) for item in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def pretty(value: Any) -> str:
    """Indented JSON for a ``<pre>``."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def when(value: dt.datetime | None) -> str:
    """A timestamp as the dashboard prints it (UTC, to the millisecond)."""
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


@dataclass
class JobView:
    """One job, ready to render."""

    info: JobInfo
    payload: str
    result: str | None
    logs: list[str] = field(default_factory=list)
    flow: Any = None


@dataclass
class QueueRow:
    """One line of the overview."""

    name: str
    counts: dict[str, int]
    paused: bool | None


class Reader:
    """The dashboard's reads of one service."""

    def __init__(self, service: QueueService) -> None:
        self.service = service
        self.policy = SensitiveKeyPolicy(service.settings.security.sensitive_keys)

    def supports(self, method: str) -> bool:
        """Whether the service has ``method`` (the optional parts of the contract)."""
        return callable(getattr(self.service, method, None))

    async def overview(self) -> list[QueueRow]:
        rows = []
        for name in await self.service.list_queues():
            counts = await self.service.get_job_counts(name)
            paused = (bool(await self.service.is_paused(name))
                      if self.supports("is_paused") else None)
            rows.append(QueueRow(name, {s: counts.get(s, 0) for s in COUNT_STATES}, paused))
        return rows

    async def jobs(self, queue: str, state: str, limit: int) -> list[JobView]:
        return [self._view(info) for info in await self.service.get_jobs(queue, state, limit)]

    async def job(self, queue: str, job_id: str) -> JobView | None:
        info = await self.service.get_job(queue, job_id)
        if info is None:
            return None
        view = self._view(info)
        if self.supports("get_job_logs"):
            view.logs = list(await self.service.get_job_logs(queue, job_id))  # type: ignore[attr-defined]
        if self.supports("get_flow"):
            view.flow = await self.service.get_flow(queue, job_id)
        return view

    async def schedulers(self, queue: str) -> list[Any]:
        if not self.supports("get_job_schedulers"):
            return []
        return list(await self.service.get_job_schedulers(queue))

    def _view(self, info: JobInfo) -> JobView:
        result = None if info.return_value is None else pretty(
            masked(info.return_value, self.policy))
        return JobView(info, pretty(masked(info.data, self.policy)), result)

    def masked(self, value: Any) -> str:
        """Any value (a scheduler's data ...) as masked, indented JSON."""
        return pretty(masked(value, self.policy))
