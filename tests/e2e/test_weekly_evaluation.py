"""End to end: weekly_evaluation through the local AWS (catalog and champion from the shared fixtures)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

from devstack.stack import LOCAL_SCALE, Stack, run_dag
from tests.e2e.helpers import _task_states

# plan_batches matches the QA set's products against the synced catalog (the sample), and the fine-tune and
# hybrid approaches call the champion endpoint: both are checked (and re-established) before each test.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("synced_kb", "champion_endpoint")]


def _get(stack: Stack, key: str) -> bytes:
    return stack.client("s3").get_object(Bucket=stack.resources["bucket"], Key=key)["Body"].read()


def _prefix(run_id: str) -> str:
    from tailor_airflow.evaluation import run_prefix

    return run_prefix("eval/", run_id)


def test_weekly_evaluation_scores_all_three_approaches(local_aws: Stack, airflow_db) -> None:
    run = run_dag("weekly_evaluation", {"sample_limit": 6})
    assert run.state == "success", _task_states(run)
    prefix = _prefix(run.run_id)
    rows = list(csv.DictReader(io.StringIO(_get(local_aws, prefix + "summary_results.csv").decode())))
    assert [r["method"] for r in rows] == ["rag", "finetune", "hybrid"]
    for row in rows:
        assert row["n"] == "6" and row["status"] == "complete"
        assert 0 < float(row["avg_bert_score"]) <= 1
        assert 0 <= float(row["avg_llm_evaluator_score"]) <= 1
        assert float(row["judge_ci95_low"]) <= float(row["avg_llm_evaluator_score"]) <= float(row["judge_ci95_high"])
        assert float(row["bert_ci95_low"]) <= float(row["avg_bert_score"]) <= float(row["bert_ci95_high"])
        assert 0 <= float(row["key_fact_match"]) <= 1
        assert float(row["avg_inference_time"]) > 0
        assert 0 < float(row["latency_p50_s"]) <= float(row["latency_p95_s"])
        assert float(row["monthly_cost_usd"]) > 0 and float(row["run_cost_usd"]) >= 0
        if row["method"] != "finetune":
            assert 0 <= float(row["retrieval_hit_rate"]) <= 1
    costs = {r["method"]: float(r["monthly_cost_usd"]) for r in rows}
    assert costs["rag"] < costs["finetune"] < costs["hybrid"]

    # Answers were persisted per batch, with latency and retrieved context.
    answers = [json.loads(line) for line in _get(local_aws, prefix + "answers/rag/batch-0000.jsonl").splitlines()]
    assert len(answers) == 6 and all(a["answer"] and a["latency_ms"] > 0 and a["retrieved"] for a in answers)
    assert all(a["input_tokens"] > 0 and a["output_tokens"] > 0 for a in answers)
    assert b"<svg" in _get(local_aws, prefix + "report.html")

    with sqlite3.connect(local_aws.warehouse_path) as db:
        runs = db.execute("SELECT approach, n_samples, status FROM eval_run WHERE run_id = ? ORDER BY approach",
                          (run.run_id,)).fetchall()
        assert runs == [("finetune", 6, "complete"), ("hybrid", 6, "complete"), ("rag", 6, "complete")]
        scores = db.execute("SELECT COUNT(*) FROM eval_score WHERE run_id = ?", (run.run_id,)).fetchone()[0]
        assert scores >= 3 * 6 * 2  # at least BERTScore and key-fact per sample and approach
        judge_rows = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT judge_model), COUNT(DISTINCT criterion), MIN(score), MAX(score) "
            "FROM eval_score WHERE run_id = ? AND metric = 'judge'", (run.run_id,)).fetchone()
        judges = len(LOCAL_SCALE["TAILOR__EVALUATION__JUDGE_MODELS"].split(","))
        assert judge_rows[:3] == (3 * 6 * judges * 4, judges, 4)  # approaches x samples x judges x criteria
        assert 0 <= judge_rows[3] <= judge_rows[4] <= 1
        judge_models = db.execute("SELECT DISTINCT judge_models FROM eval_run WHERE run_id = ?",
                                  (run.run_id,)).fetchall()
        assert len(judge_models) == 1 and judge_models[0][0].count(",") == judges - 1
        latest = db.execute("SELECT approach FROM v_eval_latest ORDER BY approach").fetchall()
        assert latest == [("finetune",), ("hybrid",), ("rag",)]
        # the verdict, question by question: 3 pairs x 3 metrics; the judges against each other and the golden set
        paired = db.execute("SELECT metric, MIN(n), MAX(n), COUNT(*) FROM eval_paired WHERE run_id = ? "
                            "GROUP BY metric ORDER BY metric", (run.run_id,)).fetchall()
        assert [(m, count) for m, _, _, count in paired] == [("bertscore_f1", 3), ("judge_score", 3),
                                                             ("key_fact_match", 3)]
        assert paired[0][1:3] == (6, 6)  # every answer has a BERTScore
        # a question is paired only where both have the metric: no key fact in a reference, no key-fact score
        assert all(1 <= low <= high <= 6 for _, low, high, _ in paired)
        agreement = db.execute("SELECT COUNT(*) FROM eval_judge_agreement WHERE run_id = ?", (run.run_id,))
        assert agreement.fetchone() == (5,)  # 4 criteria and overall
        calibration = db.execute("SELECT COUNT(DISTINCT judge_model), MIN(n) FROM eval_judge_calibration "
                                 "WHERE run_id = ? AND criterion = 'overall'", (run.run_id,)).fetchone()
        assert calibration[0] == judges and calibration[1] == int(LOCAL_SCALE["TAILOR__EVALUATION__GOLDEN_LIMIT"])
    paired_csv = list(csv.DictReader(io.StringIO(_get(local_aws, prefix + "paired_comparisons.csv").decode())))
    assert len(paired_csv) == 9 and {r["metric"] for r in paired_csv} == {"judge_score", "bertscore_f1",
                                                                          "key_fact_match"}
    html = _get(local_aws, prefix + "report.html").decode()
    assert "Verdict, question by question" in html and "Judges against the golden set" in html
    assert html.count('class="question"') == 6  # the drill-down: one row per question
    assert json.loads(_get(local_aws, prefix + "calibration.json"))["golden_items"] == 6


def test_malformed_dataset_fails_before_any_model_call(local_aws: Stack, airflow_db) -> None:
    bucket = local_aws.resources["bucket"]
    local_aws.client("s3").put_object(Bucket=bucket, Key="qa/bad.json",
                                      Body=json.dumps([{"product_name": "X", "question": "Q?", "answer": ""}]).encode())
    run = run_dag("weekly_evaluation", {"dataset": f"s3://{bucket}/qa/bad.json"})
    states = _task_states(run)
    assert run.state == "failed" and states["plan_batches"] == "failed", states
    listing = local_aws.client("s3").list_objects_v2(Bucket=bucket, Prefix=_prefix(run.run_id))
    assert "Contents" not in listing, "nothing may be generated for a rejected dataset"


@pytest.mark.parametrize(("judges", "says"), [
    (["anthropic.claude-3-5-haiku-20241022-v1:0"], "cannot be called in us-east-1"),  # end of life 2026-06-19
    (["amazon.nova-pro-v1:0", "meta.llama3-1-70b-instruct-v1:0"], "only through a cross-region inference profile"),
], ids=["end-of-life", "bare-id-needs-profile"])
def test_a_judge_aws_would_refuse_fails_before_any_model_call(local_aws: Stack, airflow_db, judges: list[str],
                                                             says: str, capfd: pytest.CaptureFixture[str],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    run = run_dag("weekly_evaluation", {"judge_models": judges, "sample_limit": 2})
    states = _task_states(run)
    assert run.state == "failed" and states["plan_batches"] == "failed", states
    listing = local_aws.client("s3").list_objects_v2(Bucket=local_aws.resources["bucket"], Prefix=_prefix(run.run_id))
    assert "Contents" not in listing, "nothing may be generated when a configured model cannot be called"
    captured = capfd.readouterr()
    text = captured.out + captured.err + caplog.text
    assert "model check failed, no model was called" in text and says in text and judges[-1] in text


def test_missing_endpoint_keeps_rag_results_and_fails_the_run(local_aws: Stack, airflow_db) -> None:
    sagemaker = local_aws.client("sagemaker")
    config = sagemaker.describe_endpoint(EndpointName="tailor-finetuned-champion")["EndpointConfigName"]
    sagemaker.delete_endpoint(EndpointName="tailor-finetuned-champion")
    try:
        run = run_dag("weekly_evaluation", {"sample_limit": 3, "approaches": ["rag", "finetune"]})
        states = _task_states(run)
        assert run.state == "failed" and states["check_complete"] == "failed", states
        assert states["publish_results"] == "success"
        rows = {r["method"]: r for r in csv.DictReader(io.StringIO(
            _get(local_aws, _prefix(run.run_id) + "summary_results.csv").decode()))}
        assert rows["rag"]["status"] == "complete" and float(rows["rag"]["avg_bert_score"]) > 0
        assert rows["finetune"]["status"] == "failed" and rows["finetune"]["avg_bert_score"] == ""
        with sqlite3.connect(local_aws.warehouse_path) as db:
            statuses = dict(db.execute("SELECT approach, status FROM eval_run WHERE run_id = ?", (run.run_id,)))
        assert statuses == {"rag": "complete", "finetune": "failed"}
    finally:
        sagemaker.create_endpoint(EndpointName="tailor-finetuned-champion", EndpointConfigName=config)
