"""Triggers (run by the triggerer; must be importable from ``plugins/``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from tailor.kb_sync import ingestion_verdict


class IngestionJobTrigger(BaseTrigger):
    """Poll a Bedrock Knowledge Base ingestion job until it is COMPLETE, FAILED or STOPPED.

    Unlike the provider's waiter-based trigger, STOPPING/STOPPED end the wait at once (the provider's waiter
    has no acceptor for them and would poll until it times out), and the event carries the job's
    statistics and failure reasons. When to stop, and what the triggerer logs about the outcome (e.g. COMPLETE
    with documents failed), come from :func:`tailor.kb_sync.ingestion_verdict`, the decision the sensor's
    ``execute_complete`` applies to the event.

    :param knowledge_base_id: The unique identifier of the knowledge base.
    :param data_source_id: The unique identifier of the data source.
    :param ingestion_job_id: The unique identifier of the ingestion job.
    :param poll_interval: Seconds between two GetIngestionJob calls.
    :param timeout: Seconds after which the trigger reports ``TIMEOUT``.
    :param aws_conn_id: The Airflow connection used for AWS credentials (region must be in the connection).
    """

    def __init__(
        self,
        *,
        knowledge_base_id: str,
        data_source_id: str,
        ingestion_job_id: str,
        poll_interval: float = 10,
        timeout: float = 3600,
        aws_conn_id: str | None = "aws_default",
    ) -> None:
        super().__init__()
        self.knowledge_base_id = knowledge_base_id
        self.data_source_id = data_source_id
        self.ingestion_job_id = ingestion_job_id
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.aws_conn_id = aws_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "knowledge_base_id": self.knowledge_base_id,
                "data_source_id": self.data_source_id,
                "ingestion_job_id": self.ingestion_job_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "aws_conn_id": self.aws_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.amazon.aws.hooks.bedrock import BedrockAgentHook

        deadline = time.monotonic() + self.timeout
        hook = BedrockAgentHook(aws_conn_id=self.aws_conn_id)
        async with await hook.get_async_conn() as client:
            while True:
                job = (
                    await client.get_ingestion_job(
                        knowledgeBaseId=self.knowledge_base_id,
                        dataSourceId=self.data_source_id,
                        ingestionJobId=self.ingestion_job_id,
                    )
                )["ingestionJob"]
                status = job["status"]
                verdict = ingestion_verdict(job)
                if verdict.done or time.monotonic() > deadline:
                    if verdict.ok:
                        self.log.info("%s", verdict.message)
                    elif verdict.done:
                        self.log.error("%s", verdict.message)
                    yield TriggerEvent(
                        {
                            "status": status if verdict.done else "TIMEOUT",
                            "ingestion_job_id": self.ingestion_job_id,
                            "statistics": job.get("statistics", {}),
                            "failure_reasons": job.get("failureReasons", []),
                        }
                    )
                    return
                self.log.info("ingestion job %s is %s", self.ingestion_job_id, status)
                await asyncio.sleep(self.poll_interval)
