"""Job payload models.

On the wire a payload is the camelCase JSON of the NestJS TypeScript interfaces
(``userId``, ``accountId``, ``syncType`` ...), so Node BullMQ workers read it unchanged.
In Python the fields are snake_case; both spellings are accepted on input.
Unknown fields are refused, so a typo never reaches a worker.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

_ID = Field(min_length=1, max_length=256)


class JobPayload(BaseModel):
    """Base of every payload model: camelCase on the wire, no unknown fields, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready camelCase dict that is stored in Redis."""
        wire: dict[str, Any] = self.__pydantic_serializer__.to_python(  # model_dump's core
            self, mode="json", by_alias=True, exclude_none=True)
        return wire

    def wire_json(self) -> bytes:
        """The JSON of :meth:`to_wire` (compact, UTF-8), serialised in one step."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude_none=True)


class BankSyncJobData(JobPayload):
    """Sync a bank account's transactions (queue ``bank-sync``)."""

    user_id: str = _ID
    account_id: str = _ID
    sync_type: Literal["full", "incremental"]


class NotificationJobData(JobPayload):
    """Send a notification from a template (queue ``notifications``)."""

    user_id: str = _ID
    type: Literal["email", "push", "telegram"]
    template_id: str = _ID
    data: dict[str, Any] = Field(default_factory=dict)


class ReportJobData(JobPayload):
    """Generate a report for a period (queue ``reports``); dates are ISO ``YYYY-MM-DD``."""

    user_id: str = _ID
    report_type: Literal["monthly", "annual", "custom"]
    start_date: dt.date
    end_date: dt.date

    @model_validator(mode="after")
    def _period_in_order(self) -> ReportJobData:
        if self.start_date > self.end_date:
            raise ValueError(
                f"startDate {self.start_date.isoformat()} is after endDate "
                f"{self.end_date.isoformat()}"
            )
        return self


class AnalyticsJobData(JobPayload):
    """Record an analytics event for a user (queue ``analytics``)."""

    user_id: str = _ID
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)
