"""DAG integrity: every DAG imports, is documented, retried, typed for the trigger form and parse-time light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devstack.stack import REPO

EXPECTED_DAGS = {"catalog_kb_sync", "catalog_kb_sync_poll", "monthly_finetune", "weekly_evaluation",
                 "qa_dataset_build"}
# boto3 is absent on purpose: the Amazon provider's operators import it themselves.
HEAVY_MODULES = ("torch", "transformers", "bert_score", "pandas", "moto", "localaws", "sagemaker", "sagemaker.core")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) >= EXPECTED_DAGS


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dag_conventions(dagbag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.tags, f"{dag_id} has no tags"
    assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id} needs a module docstring (doc_md)"
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    for task in dag.tasks:
        assert task.retries >= 2, f"{dag_id}.{task.task_id} has retries={task.retries}"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_params_are_typed_and_described(dagbag, dag_id: str) -> None:
    params = dagbag.dags[dag_id].params
    assert params, f"{dag_id} has no Params (a manual re-run needs them)"
    for name in params:
        param = params.get_param(name)
        assert param.schema.get("type"), f"{dag_id} param {name} has no type"
        assert len(param.description or "") > 20, f"{dag_id} param {name} has no useful description"


def test_asset_triggered_dag_never_templates_logical_date(dagbag) -> None:
    """Asset-triggered runs have no logical_date: nothing may render it."""
    dag = dagbag.dags["catalog_kb_sync"]
    for task in dag.tasks:
        for field in task.template_fields:
            value = str(getattr(task, field, ""))
            for forbidden in ("logical_date", "{{ ds", "{{ ts", "execution_date"):
                assert forbidden not in value, f"{task.task_id}.{field} uses {forbidden}"


def test_kb_sync_wiring(dagbag) -> None:
    dag = dagbag.dags["catalog_kb_sync"]
    start = dag.get_task("start_ingestion")
    wait = dag.get_task("wait_for_ingestion")
    assert type(start).__name__ == "BedrockIngestDataOperator" and start.wait_for_completion is False
    assert type(wait).__name__ == "StrictIngestionJobSensor" and wait.deferrable is True
    assert dag.get_task("publish_kb_version").upstream_task_ids == {"stage_catalog", "validate_catalogs",
                                                                    "wait_for_ingestion"}
    assert [o.name for o in dag.get_task("publish_kb_version").outlets] == ["kb-synced"]
    poll = dagbag.dags["catalog_kb_sync_poll"]
    assert poll.get_task("wait_for_catalog_drop").deferrable is True
    # The two DAGs share the same sync tasks.
    shared = {"validate_catalogs", "report_quarantined", "stage_catalog", "ingestion_needed", "start_ingestion",
              "wait_for_ingestion", "publish_kb_version"}
    assert shared <= set(dag.task_ids) and shared <= set(poll.task_ids)


@pytest.mark.parametrize("dag_file", sorted(p.name for p in (REPO / "dags").glob("*.py")))
def test_dag_file_imports_nothing_heavy(dag_file: str) -> None:
    """Parse time is a product feature: a DAG file must not pull ML or AWS SDK modules at import."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('d', {str(REPO / 'dags' / dag_file)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1:] in ([], [""]), f"{dag_file} imports {result.stdout.strip()}"


@pytest.mark.parametrize("path", sorted(p for p in (REPO / "plugins").rglob("*.py") if p.stem != "__init__"),
                         ids=lambda p: p.name)
def test_no_plugin_file_shadows_an_installed_package(path: Path) -> None:
    """Airflow's plugin loader imports every file under plugins/ as a top-level module named after the file: a
    plugins/.../sagemaker.py became sys.modules["sagemaker"] in the workers, and the SageMaker SDK's import
    (``sagemaker.core``) failed at task run time ("'sagemaker' is not a package")."""
    import importlib.util

    assert importlib.util.find_spec(path.stem) is None, f"{path.name} shadows the installed module {path.stem!r}"
