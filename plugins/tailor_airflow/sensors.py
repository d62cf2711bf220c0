"""Sensors that close gaps in the Amazon provider's."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.sensors.bedrock import BedrockIngestionJobSensor
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from tailor.kb_sync import IngestionVerdict, ingestion_verdict
from tailor_airflow.triggers import IngestionJobTrigger


class StrictIngestionJobSensor(BedrockIngestionJobSensor):
    """``BedrockIngestionJobSensor`` that tells the truth about how the ingestion ended.

    The provider's sensor (9.39) treats every non-intermediate, non-FAILED state as success and never reads the
    job's statistics, so a stopped ingestion, or one that ended COMPLETE with documents failed (a product
    missing from the Knowledge Base), would publish the catalog version. Here one decision,
    :func:`tailor.kb_sync.ingestion_verdict`, judges the job in every path: ``poke`` (not deferrable), the
    :class:`IngestionJobTrigger` (deferred wait, which also ends at once on STOPPED) and ``execute_complete``.
    A job that ended FAILED/STOPPED, or COMPLETE with ``numberOfDocumentsFailed`` > 0, fails the task for good
    (``AirflowFailException``): a task retry would only wait on the same finished job. Recovery is a new job:
    clear ``start_ingestion`` with its downstream tasks. A timeout stays retryable (the job may finish).
    Both modes return the same value on success: ``{"status", "ingestion_job_id", "statistics",
    "failure_reasons"}``.

    :param timeout_seconds: How long the deferred wait may take before the task fails.
    """

    FAILURE_STATES = ("FAILED", "STOPPING", "STOPPED")

    def __init__(self, *, timeout_seconds: float = 3600, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout_seconds = timeout_seconds

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            # The provider's execute (9.39) drops the poke loop's return value: call the loop itself, so both
            # modes hand the same event to publish_kb_version.
            return super(BedrockIngestionJobSensor, self).execute(context=context)
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

    # BaseSensorOperator.poke may return a PokeReturnValue (its XCom value); the provider's BedrockBaseSensor
    # narrowed the annotation to bool, which is what mypy compares against.
    def poke(self, context: Any, **kwargs: Any) -> bool | PokeReturnValue:  # type: ignore[override]
        """One GetIngestionJob, judged like the deferred path (the provider's poke calls it twice and only
        knows FAILED)."""
        job = self._get_ingestion_job()
        verdict = ingestion_verdict(job)
        if not verdict.done:
            self.log.info("%s", verdict.message)
            return False
        event = {
            "status": job.get("status"),
            "ingestion_job_id": self.ingestion_job_id,
            "statistics": job.get("statistics") or {},
            "failure_reasons": job.get("failureReasons") or [],
        }
        return PokeReturnValue(is_done=True, xcom_value=self._conclude(verdict, event))

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        event = event or {}
        job = {
            "ingestionJobId": event.get("ingestion_job_id") or self.ingestion_job_id,
            "knowledgeBaseId": self.knowledge_base_id,
            "dataSourceId": self.data_source_id,
            "status": event.get("status"),
            "statistics": event.get("statistics") or {},
            "failureReasons": event.get("failure_reasons") or [],
        }
        verdict = ingestion_verdict(job)
        if not verdict.done:  # the trigger only ends on a terminal state or TIMEOUT; anything else is a timeout
            raise AirflowException(f"{verdict.message}: the wait ended before the job did; a retry waits again.")
        return self._conclude(verdict, event)

    def _conclude(self, verdict: IngestionVerdict, event: dict[str, Any]) -> dict[str, Any]:
        """Return the event on success; else fail the task, for good when the job is over."""
        if verdict.ok:
            self.log.info("%s", verdict.message)
            return event
        if verdict.final:
            raise AirflowFailException(verdict.message)
        raise AirflowException(verdict.message)
