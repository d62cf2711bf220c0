"""weekly_evaluation's wiring: retry-safe stages, and only generation and judging can call a model."""

from __future__ import annotations

import pytest

from devstack.stack import REPO
from tailor.records import Approach


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags" / "weekly_evaluation.py")).dags["weekly_evaluation"]


def test_the_stages_run_in_order_and_the_warehouse_and_report_follow_the_summaries(dag) -> None:
    upstream = {task_id: set(task.upstream_task_ids) for task_id, task in dag.task_dict.items()}
    assert upstream == {
        "plan_batches": set(),
        "generate_answers": {"plan_batches"},
        "score_answers": {"generate_answers"},
        "judge_answers": {"score_answers"},
        "calibrate_judges": {"plan_batches"},  # the golden set, judged while the answers are generated
        "summarize_results": {"score_answers", "judge_answers", "calibrate_judges"},
        "load_warehouse": {"summarize_results"},
        "publish_results": {"summarize_results"},
        "alert_on_findings": {"summarize_results", "load_warehouse"},
        "check_complete": {"summarize_results", "alert_on_findings", "publish_results"},
    }


def test_the_judge_checkpoints_under_the_run_and_does_nothing_else(dag) -> None:
    judge = dag.get_task("judge_answers")
    assert judge.checkpoint_uri is not None  # an XComArg of score_answers: the run's judgements/ prefix
    assert not hasattr(judge, "warehouse_conn_id")


def test_the_approaches_param_is_the_approach_enum(dag) -> None:
    assert dag.params["approaches"] == Approach.values()
    assert dag.params.get_param("approaches").schema["items"]["enum"] == Approach.values()
