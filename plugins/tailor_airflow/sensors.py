"""Sensors that close gaps in the Amazon provider's."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.sensors.bedrock import BedrockIngestionJobSensor
from airflow.sdk.exceptions import AirflowException

from tailor_airflow.triggers import IngestionJobTrigger


class StrictIngestionJobSensor(BedrockIngestionJobSensor):
    """``BedrockIngestionJobSensor`` that fails on STOPPING/STOPPED instead of passing them as success.

    The provider's sensor (9.39) treats every non-intermediate, non-FAILED state as success, so a stopped
    ingestion would publish a Knowledge Base version that was never indexed. Deferred waits use
    :class:`IngestionJobTrigger`, which also ends at once on STOPPED.

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
            reasons = "; ".join(event.get("failure_reasons") or []) or "no reason given"
            raise AirflowException(
                f"Bedrock ingestion job {self.ingestion_job_id} (knowledge base {self.knowledge_base_id}, data "
                f"source {self.data_source_id}) ended {event.get('status', 'without an event')}: {reasons}. "
                "The Knowledge Base keeps its previous version; fix the cause and clear this task to retry."
            )
        self.log.info("ingestion job %s COMPLETE: %s", self.ingestion_job_id, event.get("statistics"))
        return event
