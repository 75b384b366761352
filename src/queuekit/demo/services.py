"""Example application services: each gets ``QueueService`` injected and enqueues jobs."""

from __future__ import annotations

import datetime as dt

from queuekit.jobs import JobInfo, JobOptions
from queuekit.payloads import BankSyncJobData
from queuekit.queues import QueueName
from queuekit.service import QueueService


class BankingService:
    """Banking features that sync accounts in the background."""

    def __init__(self, queue_service: QueueService) -> None:
        self.queue_service = queue_service

    async def sync_bank_account(self, user_id: str, account_id: str,
                                full: bool = False) -> JobInfo:
        """Queue a transaction sync of one account."""
        return await self.queue_service.add_job(
            QueueName.BANK_SYNC,
            "sync-transactions",
            BankSyncJobData(user_id=user_id, account_id=account_id,
                            sync_type="full" if full else "incremental"),
        )


class NotificationService:
    """Sends notifications through the ``notifications`` queue."""

    def __init__(self, queue_service: QueueService) -> None:
        self.queue_service = queue_service

    async def notify(self, user_id: str, template_id: str, channel: str = "email",
                     delay_ms: int = 0, **data: object) -> JobInfo:
        """Queue a notification, optionally delayed."""
        return await self.queue_service.add_job(
            QueueName.NOTIFICATIONS,
            "send-notification",
            {"userId": user_id, "type": channel, "templateId": template_id, "data": data},
            options=JobOptions(delay=delay_ms) if delay_ms else None,
        )


class ReportService:
    """Generates reports in the background."""

    def __init__(self, queue_service: QueueService) -> None:
        self.queue_service = queue_service

    async def request_report(self, user_id: str, report_type: str, start: dt.date,
                             end: dt.date) -> JobInfo:
        """Queue a report for a period."""
        return await self.queue_service.add_job(
            QueueName.REPORTS,
            "generate-report",
            {"userId": user_id, "reportType": report_type, "startDate": start.isoformat(),
             "endDate": end.isoformat()},
        )
