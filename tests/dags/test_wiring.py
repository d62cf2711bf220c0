"""DAG wiring: weekly_evaluation's retry-safe stages (only generation and judging call a model) and monthly_finetune's
optional human approval before a promotion."""

from __future__ import annotations

import os
import subprocess
import sys

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


def test_a_human_approves_each_promotion_only_when_configured() -> None:
    """finetune.require_approval (parse time, off by default) puts an ApprovalOperator before promote."""
    script = ("from airflow.dag_processing.dagbag import DagBag; "
              "d = DagBag(dag_folder='dags/monthly_finetune.py').dags['monthly_finetune']; "
              "t = d.task_dict.get('approve_promotion'); "
              "print(sorted(d.task_dict['promote'].upstream_task_ids), type(t).__name__ if t else None, "
              "t.defaults if t else None)")
    results = {}
    for value in ("0", "1"):
        env = {**os.environ, "TAILOR__FINETUNE__REQUIRE_APPROVAL": value}
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        results[value] = done.stdout.strip().splitlines()[-1]
    assert results["0"] == "['deployment_configs', 'evaluate_challenger', 'prepare_training_data'] None None"
    assert results["1"] == ("['approve_promotion', 'deployment_configs', 'evaluate_challenger', "
                            "'prepare_training_data'] ApprovalOperator ['Reject']")
