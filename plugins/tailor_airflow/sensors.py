"""Sensors that close gaps in the Amazon provider's."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.sensors.bedrock import BedrockIngestionJobSensor
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from tailor_airflow.triggers import IngestionJobTrigger


class StrictIngestionJobSensor(BedrockIngestionJobSensor):
    """``BedrockIngestionJobSensor`` that fails on STOPPING/STOPPED instead of passing them as success.

    The provider's sensor (9.39) treats every non-intermediate, non-FAILED state as success, so a stopped
    ingestion would publish a Knowledge Base version that was never indexed. Deferred waits use
    :class:`IngestionJobTrigger`, which also ends at once on STOPPED. A job that ended FAILED/STOPPED fails the
    task for good (``AirflowFailException``): a task retry would only wait on the same finished job. Recovery is a
    new job: clear ``start_ingestion`` with its downstream tasks. A timeout stays retryable (the job may finish).

    :param timeout_seconds: How long the deferred wait may take before the task fails.
    """

    FAILURE_STATES = ("FAILED", "STOPPING", "STOPPED")

    def __init__(self, *, timeout_seconds: float = 3600, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout_seconds = timeout_seconds

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context=context)
        self.defer(
            trigger=IngestionJobTrigger(
                knowledge_base_id=self.knowledge_base_id,
                data_source_id=self.data_source_id,
                ingestion_job_id=self.ingestion_job_id,
                poll_interval=self.poke_interval,
                timeout=self.timeout_seconds,
                aws_conn_id=self.aws_conn_id,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "COMPLETE":
            event = event or {}
            status = event.get("status", "without an event")
            reasons = "; ".join(event.get("failure_reasons") or []) or "no reason given"
            message = (f"Bedrock ingestion job {self.ingestion_job_id} (knowledge base {self.knowledge_base_id}, "
                       f"data source {self.data_source_id}) ended {status}: {reasons}. The Knowledge Base keeps "
                       "its previous version and the catalog drop stays in the incoming prefix")
            if status in self.FAILURE_STATES:  # the job is over: waiting on it again cannot help, so no retry
                raise AirflowFailException(
                    f"{message}; fix the cause, then clear start_ingestion with its downstream tasks (or the "
                    "whole run) to start a new ingestion job.")
            raise AirflowException(f"{message}; a retry waits on the same job again.")  # timeout: still running
        self.log.info("ingestion job %s COMPLETE: %s", self.ingestion_job_id, event.get("statistics"))
        return event
