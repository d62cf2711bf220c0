"""Provider-style tests of StrictIngestionJobSensor and IngestionJobTrigger (no AWS: the clients are mocks).

Both modes of the sensor (poke, deferred via the trigger) and the trigger judge a job with one decision,
``tailor.kb_sync.ingestion_verdict``: COMPLETE with documents failed fails the task like FAILED/STOPPED do.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from airflow.providers.amazon.aws.hooks.bedrock import BedrockAgentHook
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred
from airflow.triggers.base import TriggerEvent

from tailor.kb_sync import INGESTION_TERMINAL_STATES
from tailor_airflow.sensors import StrictIngestionJobSensor
from tailor_airflow.triggers import IngestionJobTrigger

KB_ID = "KB12345678"
DS_ID = "DS12345678"
JOB_ID = "JOB1234567"
REASONS = ["Access denied to s3://tailor-bakeoff/kb-data/", "Embedding model throttled"]
FAILED_DOC = "s3://tailor-bakeoff/kb-data/vortex-mixer-vm-200-0123456789ab.txt"
DOC_REASONS = [f"Encountered error: Ignored 1 files due to invalid metadata attributes. [Files: {FAILED_DOC}]. "
               "Call to Customer Source did not succeed."]
PARTIAL = {"numberOfDocumentsScanned": 15, "numberOfNewDocumentsIndexed": 14, "numberOfDocumentsFailed": 1}


def job(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "ingestionJob": {
            "knowledgeBaseId": KB_ID,
            "dataSourceId": DS_ID,
            "ingestionJobId": JOB_ID,
            "status": status,
            **extra,
        }
    }


def make_sensor(**kwargs: Any) -> StrictIngestionJobSensor:
    params: dict[str, Any] = {
        "task_id": "wait_for_ingestion",
        "knowledge_base_id": KB_ID,
        "data_source_id": DS_ID,
        "ingestion_job_id": JOB_ID,
        "aws_conn_id": "aws_test",
    }
    params.update(kwargs)
    return StrictIngestionJobSensor(**params)


@pytest.fixture
def mock_conn() -> Iterator[mock.MagicMock]:
    with mock.patch.object(BedrockAgentHook, "conn") as _conn:
        yield _conn


# --- StrictIngestionJobSensor --------------------------------------------------------------------------------


def test_template_fields() -> None:
    sensor = make_sensor()
    for field in ("knowledge_base_id", "data_source_id", "ingestion_job_id"):
        assert field in sensor.template_fields


def test_init() -> None:
    sensor = make_sensor(poke_interval=7, timeout_seconds=120, deferrable=True)
    assert (sensor.knowledge_base_id, sensor.data_source_id, sensor.ingestion_job_id) == (KB_ID, DS_ID, JOB_ID)
    assert sensor.poke_interval == 7
    assert sensor.timeout_seconds == 120
    assert sensor.deferrable is True
    assert sensor.hook.aws_conn_id == "aws_test"
    assert make_sensor().timeout_seconds == 3600


@pytest.mark.parametrize("status", ["STARTING", "IN_PROGRESS"])
def test_poke_intermediate_states(mock_conn: mock.MagicMock, status: str) -> None:
    mock_conn.get_ingestion_job.return_value = job(status)
    assert make_sensor().poke({}) is False
    mock_conn.get_ingestion_job.assert_called_with(
        knowledgeBaseId=KB_ID, dataSourceId=DS_ID, ingestionJobId=JOB_ID
    )


def test_poke_complete_returns_what_the_deferred_path_returns(mock_conn: mock.MagicMock) -> None:
    statistics = {"numberOfDocumentsScanned": 15, "numberOfNewDocumentsIndexed": 15, "numberOfDocumentsFailed": 0}
    mock_conn.get_ingestion_job.return_value = job("COMPLETE", statistics=statistics)
    result = make_sensor().poke({})
    assert isinstance(result, PokeReturnValue) and result.is_done
    event = {"status": "COMPLETE", "ingestion_job_id": JOB_ID, "statistics": statistics, "failure_reasons": []}
    assert result.xcom_value == event
    assert make_sensor().execute_complete({}, event) == event
    mock_conn.get_ingestion_job.assert_called_once()


def test_poke_complete_with_failed_documents_fails_for_good(mock_conn: mock.MagicMock) -> None:
    mock_conn.get_ingestion_job.return_value = job("COMPLETE", statistics=PARTIAL, failureReasons=DOC_REASONS)
    with pytest.raises(AirflowFailException) as caught:
        make_sensor().poke({})
    message = str(caught.value)
    assert "ended COMPLETE, but 1 of 15 documents scanned FAILED" in message
    assert FAILED_DOC in message and "NOT published" in message
    mock_conn.get_ingestion_job.assert_called_once()


def test_non_deferrable_execute_polls_then_returns_the_event(mock_conn: mock.MagicMock) -> None:
    statistics = {"numberOfDocumentsScanned": 15, "numberOfDocumentsFailed": 0}
    mock_conn.get_ingestion_job.side_effect = [job("STARTING"), job("IN_PROGRESS"),
                                               job("COMPLETE", statistics=statistics)]
    result = make_sensor(deferrable=False, poke_interval=0).execute({})
    assert result == {"status": "COMPLETE", "ingestion_job_id": JOB_ID, "statistics": statistics,
                      "failure_reasons": []}
    assert mock_conn.get_ingestion_job.call_count == 3


def test_non_deferrable_execute_fails_on_failed_documents(mock_conn: mock.MagicMock) -> None:
    mock_conn.get_ingestion_job.side_effect = [job("IN_PROGRESS"),
                                               job("COMPLETE", statistics=PARTIAL, failureReasons=DOC_REASONS)]
    with pytest.raises(AirflowFailException, match="1 of 15 documents scanned FAILED"):
        make_sensor(deferrable=False, poke_interval=0).execute({})


@pytest.mark.parametrize(
    "status",
    [
        pytest.param("FAILED", id="failed"),
        pytest.param("STOPPING", id="stopping"),
        pytest.param("STOPPED", id="stopped"),
    ],
)
def test_poke_failure_states_raise_with_reasons(mock_conn: mock.MagicMock, status: str) -> None:
    mock_conn.get_ingestion_job.return_value = job(status, failureReasons=REASONS)
    with pytest.raises(AirflowFailException) as caught:  # the same verdict as the deferred path
        make_sensor().poke({})
    message = str(caught.value)
    assert f"ended {status}: {'; '.join(REASONS)}" in message
    assert "clear start_ingestion with its downstream tasks" in message


@pytest.mark.parametrize("status", ["FAILED", "STOPPING", "STOPPED"])
def test_poke_failure_states_raise_without_reasons(mock_conn: mock.MagicMock, status: str) -> None:
    mock_conn.get_ingestion_job.return_value = job(status)
    with pytest.raises(AirflowFailException, match=f"{JOB_ID} .* ended {status}: no reason given"):
        make_sensor().poke({})


def test_failure_states_include_stop_states() -> None:
    assert set(StrictIngestionJobSensor.FAILURE_STATES) == {"FAILED", "STOPPING", "STOPPED"}
    # Every state the trigger ends on, other than COMPLETE, is a failure of the sensor too.
    assert set(INGESTION_TERMINAL_STATES) - {"COMPLETE"} <= set(StrictIngestionJobSensor.FAILURE_STATES)


def test_execute_deferrable_defers_to_ingestion_job_trigger(mock_conn: mock.MagicMock) -> None:
    sensor = make_sensor(deferrable=True, poke_interval=5, timeout_seconds=900)
    with pytest.raises(TaskDeferred) as caught:
        sensor.execute({})
    deferred = caught.value
    trigger = deferred.trigger
    assert isinstance(trigger, IngestionJobTrigger)
    assert deferred.method_name == "execute_complete"
    assert trigger.knowledge_base_id == KB_ID
    assert trigger.data_source_id == DS_ID
    assert trigger.ingestion_job_id == JOB_ID
    assert trigger.poll_interval == 5
    assert trigger.timeout == 900
    assert trigger.aws_conn_id == "aws_test"
    mock_conn.get_ingestion_job.assert_not_called()  # deferring must not call AWS from the worker


def test_execute_complete_returns_event_on_complete() -> None:
    event = {"status": "COMPLETE", "ingestion_job_id": JOB_ID, "statistics": {"numberOfDocumentsScanned": 15},
             "failure_reasons": []}
    assert make_sensor().execute_complete({}, event) == event


@pytest.mark.parametrize(
    ("event", "status_text", "reasons_text"),
    [
        pytest.param({"status": "FAILED", "failure_reasons": REASONS}, "FAILED", "; ".join(REASONS), id="failed"),
        pytest.param({"status": "STOPPED", "failure_reasons": ["Stopped by user"]}, "STOPPED", "Stopped by user",
                     id="stopped"),
        pytest.param({"status": "TIMEOUT", "failure_reasons": []}, "TIMEOUT", "no reason given", id="timeout"),
        pytest.param(None, "without a status", "no reason given", id="none-event"),
        pytest.param({}, "without a status", "no reason given", id="empty-event"),
    ],
)
def test_execute_complete_raises(event: dict[str, Any] | None, status_text: str, reasons_text: str) -> None:
    with pytest.raises(AirflowException) as caught:
        make_sensor().execute_complete({}, event)
    message = str(caught.value)
    assert JOB_ID in message
    assert KB_ID in message and DS_ID in message
    assert f"ended {status_text}: {reasons_text}" in message


@pytest.mark.parametrize("status", ["FAILED", "STOPPING", "STOPPED"])
def test_a_terminal_failure_is_not_retried_and_says_how_to_recover(status: str) -> None:
    """Retrying the sensor would wait on the same finished job: fail for good and name the recovery."""
    with pytest.raises(AirflowFailException) as caught:
        make_sensor().execute_complete({}, {"status": status, "failure_reasons": REASONS})
    assert "clear start_ingestion with its downstream tasks" in str(caught.value)
    assert "previous version" in str(caught.value)


@pytest.mark.parametrize("event", [{"status": "TIMEOUT"}, None], ids=["timeout", "no-event"])
def test_a_timeout_stays_retryable(event: dict[str, Any] | None) -> None:
    with pytest.raises(AirflowException) as caught:
        make_sensor().execute_complete({}, event)
    assert not isinstance(caught.value, AirflowFailException)


def test_execute_complete_fails_for_good_on_failed_documents() -> None:
    event = {"status": "COMPLETE", "ingestion_job_id": JOB_ID, "statistics": PARTIAL,
             "failure_reasons": DOC_REASONS}
    with pytest.raises(AirflowFailException) as caught:
        make_sensor().execute_complete({}, event)
    message = str(caught.value)
    assert f"Bedrock ingestion job {JOB_ID} (knowledge base {KB_ID}, data source {DS_ID})" in message
    assert "ended COMPLETE, but 1 of 15 documents scanned FAILED to ingest" in message
    assert f'"{DOC_REASONS[0]}"' in message
    assert "The catalog version was NOT published" in message


def test_the_sync_dags_publish_only_after_the_sensor_succeeded() -> None:
    """A failed wait_for_ingestion must stop publish_kb_version (which advances catalog/current.json)."""
    from airflow.dag_processing.dagbag import DagBag

    from devstack.stack import REPO

    for name in ("catalog_kb_sync", "catalog_kb_sync_poll"):
        dagbag = DagBag(dag_folder=str(REPO / "dags" / f"{name}.py"))
        assert dagbag.import_errors == {}
        dag = dagbag.dags[name]
        wait, publish = dag.get_task("wait_for_ingestion"), dag.get_task("publish_kb_version")
        assert isinstance(wait, StrictIngestionJobSensor) and wait.deferrable
        assert "wait_for_ingestion" in publish.upstream_task_ids
        assert publish.trigger_rule == "all_success"
        assert not [t for t in dag.tasks if t.trigger_rule != "all_success" and "publish" in t.task_id]


# --- IngestionJobTrigger -------------------------------------------------------------------------------------


def make_trigger(**kwargs: Any) -> IngestionJobTrigger:
    params: dict[str, Any] = {
        "knowledge_base_id": KB_ID,
        "data_source_id": DS_ID,
        "ingestion_job_id": JOB_ID,
        "poll_interval": 0,
        "timeout": 60,
        "aws_conn_id": "aws_test",
    }
    params.update(kwargs)
    return IngestionJobTrigger(**params)


def test_trigger_serialize_round_trip() -> None:
    trigger = make_trigger(poll_interval=3, timeout=120)
    classpath, kwargs = trigger.serialize()
    assert classpath == "tailor_airflow.triggers.IngestionJobTrigger"
    assert kwargs == {
        "knowledge_base_id": KB_ID,
        "data_source_id": DS_ID,
        "ingestion_job_id": JOB_ID,
        "poll_interval": 3,
        "timeout": 120,
        "aws_conn_id": "aws_test",
    }
    module_name, _, class_name = classpath.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert cls is IngestionJobTrigger
    rebuilt = cls(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert vars(rebuilt)["timeout"] == 120 and rebuilt.poll_interval == 3


def test_trigger_defaults() -> None:
    trigger = IngestionJobTrigger(knowledge_base_id=KB_ID, data_source_id=DS_ID, ingestion_job_id=JOB_ID)
    assert (trigger.poll_interval, trigger.timeout, trigger.aws_conn_id) == (10, 3600, "aws_default")


class FakeAsyncClient:
    """Answers GetIngestionJob with the given statuses in turn (the last one repeats)."""

    def __init__(self, *responses: dict[str, Any]) -> None:
        self.responses = list(responses)
        self.calls: list[dict[str, Any]] = []

    async def get_ingestion_job(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return self.responses[min(len(self.calls), len(self.responses)) - 1]


class FakeAsyncConn:
    def __init__(self, client: FakeAsyncClient) -> None:
        self.client = client
        self.entered = self.exited = False

    async def __aenter__(self) -> FakeAsyncClient:
        self.entered = True
        return self.client

    async def __aexit__(self, *exc: Any) -> None:
        self.exited = True


def run_trigger(trigger: IngestionJobTrigger, client: FakeAsyncClient) -> tuple[list[TriggerEvent], FakeAsyncConn]:
    conn = FakeAsyncConn(client)

    async def collect() -> list[TriggerEvent]:
        return [event async for event in trigger.run()]

    with mock.patch.object(BedrockAgentHook, "get_async_conn", new=mock.AsyncMock(return_value=conn)):
        events = asyncio.run(asyncio.wait_for(collect(), timeout=10))
    return events, conn


def test_trigger_run_stopped_after_in_progress() -> None:
    client = FakeAsyncClient(
        job("IN_PROGRESS"), job("IN_PROGRESS"), job("STOPPED", failureReasons=["Stopped by user"]),
    )
    events, conn = run_trigger(make_trigger(), client)
    assert len(events) == 1
    assert isinstance(events[0], TriggerEvent)
    assert events[0].payload == {
        "status": "STOPPED",
        "ingestion_job_id": JOB_ID,
        "statistics": {},
        "failure_reasons": ["Stopped by user"],
    }
    assert len(client.calls) == 3
    assert client.calls[0] == {"knowledgeBaseId": KB_ID, "dataSourceId": DS_ID, "ingestionJobId": JOB_ID}
    assert conn.entered and conn.exited


def test_trigger_run_failed() -> None:
    client = FakeAsyncClient(job("STARTING"), job("FAILED", failureReasons=REASONS))
    events, _ = run_trigger(make_trigger(), client)
    assert [e.payload["status"] for e in events] == ["FAILED"]
    assert events[0].payload["failure_reasons"] == REASONS
    assert len(client.calls) == 2


def test_trigger_run_complete_carries_statistics() -> None:
    statistics = {"numberOfDocumentsScanned": 15, "numberOfNewDocumentsIndexed": 15, "numberOfDocumentsFailed": 0}
    client = FakeAsyncClient(job("STARTING"), job("IN_PROGRESS"), job("COMPLETE", statistics=statistics))
    events, _ = run_trigger(make_trigger(), client)
    assert len(events) == 1
    payload = events[0].payload
    assert payload["status"] == "COMPLETE"
    assert payload["statistics"] == statistics
    assert payload["failure_reasons"] == []
    assert payload["ingestion_job_id"] == JOB_ID
    assert len(client.calls) == 3
    # The sensor accepts what the trigger emits.
    assert make_sensor().execute_complete({}, payload) == payload


def test_trigger_run_complete_with_failed_documents_ends_and_the_sensor_fails() -> None:
    client = FakeAsyncClient(job("IN_PROGRESS"), job("COMPLETE", statistics=PARTIAL, failureReasons=DOC_REASONS))
    trigger = make_trigger()
    with mock.patch.object(type(trigger), "log", new_callable=mock.PropertyMock) as log:
        events, _ = run_trigger(trigger, client)
    assert [e.payload for e in events] == [{"status": "COMPLETE", "ingestion_job_id": JOB_ID,
                                            "statistics": PARTIAL, "failure_reasons": DOC_REASONS}]
    logged = " ".join(str(c.args) for c in log.return_value.error.call_args_list)
    assert "1 of 15 documents scanned FAILED" in logged, "the triggerer log tells the truth too"
    with pytest.raises(AirflowFailException, match="1 of 15 documents scanned FAILED"):
        make_sensor().execute_complete({}, events[0].payload)


def test_trigger_keeps_polling_through_a_state_it_does_not_know() -> None:
    client = FakeAsyncClient(job("SOME_NEW_STATE"), job("COMPLETE"))
    events, _ = run_trigger(make_trigger(), client)
    assert [e.payload["status"] for e in events] == ["COMPLETE"] and len(client.calls) == 2


def test_trigger_run_timeout() -> None:
    client = FakeAsyncClient(job("IN_PROGRESS", statistics={"numberOfDocumentsScanned": 3}))
    events, _ = run_trigger(make_trigger(timeout=0), client)
    assert len(events) == 1
    assert events[0].payload["status"] == "TIMEOUT"
    assert events[0].payload["statistics"] == {"numberOfDocumentsScanned": 3}
    assert len(client.calls) == 1
    with pytest.raises(AirflowException, match=rf"{JOB_ID}.*ended TIMEOUT"):
        make_sensor().execute_complete({}, events[0].payload)


def test_trigger_run_timeout_still_reports_terminal_state() -> None:
    # A job that finished is reported as finished even when the deadline has passed.
    client = FakeAsyncClient(job("COMPLETE"))
    events, _ = run_trigger(make_trigger(timeout=0), client)
    assert [e.payload["status"] for e in events] == ["COMPLETE"]


def test_trigger_run_polls_with_interval() -> None:
    client = FakeAsyncClient(job("IN_PROGRESS"), job("IN_PROGRESS"), job("COMPLETE"))
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)
        await real_sleep(0)

    with mock.patch("tailor_airflow.triggers.asyncio.sleep", new=fake_sleep):
        events, _ = run_trigger(make_trigger(poll_interval=7), client)
    assert [e.payload["status"] for e in events] == ["COMPLETE"]
    assert sleeps == [7, 7]
