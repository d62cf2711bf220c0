"""Provider-style tests of LLMJudgeOperator and of the weekly tasks after it (summaries, warehouse).

Bedrock Converse is a MagicMock (``BedrockRuntimeHook.conn`` patched) replying from a script, S3 is moto
(``S3Hook.get_conn`` and the tasks' ``settings_and_s3`` patched to a real boto3 client) and the warehouse is a real
SQLite file reached through an Airflow connection given as ``AIRFLOW_CONN_TAILOR_WAREHOUSE_TEST``. Every model call
is counted: a retry of the judge, of the summaries or of the warehouse load never pays for a judgement twice.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from unittest import mock
from urllib.parse import quote

import pytest
from airflow.providers.amazon.aws.hooks.bedrock import BedrockRuntimeHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from botocore.exceptions import ClientError

from tailor.records import RunLayout
from tailor.warehouse import Warehouse
from tailor_airflow import evaluation
from tailor_airflow.llm_judge import LLMJudgeOperator

BUCKET = "tailor-bakeoff-test"
LAYOUT = RunLayout(BUCKET, "eval/2026-11-20/")
ANSWERS_URI = LAYOUT.uri(LAYOUT.scored)
OUTPUT_URI = LAYOUT.uri(LAYOUT.judged)
RUN_ID = "scheduled__2026-11-20T10:00:00+00:00"
CONN_ID = "tailor_warehouse_test"
JUDGE_A = "amazon.nova-pro-v1:0"
JUDGE_B = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
JUDGES = (JUDGE_A, JUDGE_B)
CRITERIA = ("correctness", "completeness", "faithfulness", "no_hallucination")
STARTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
VERSIONS = {"dataset_version": "qa-abc123", "prompt_version": "p1",
            "generator_model": {"rag": "amazon.nova-lite-v1:0", "finetune": "smollm2-ft-7"}}  # fmt: skip
GENERATION_ERROR = "ReadTimeoutError: endpoint timed out"

# (approach, sample_id, answer or None, scores of judge A, scores of judge B) -- criteria in CRITERIA order.
# Binary fractions only, so every mean below is exact.
SCRIPT = [
    ("rag", "q-001", "The P-200 pump is rated to 16 bar.", (1.0, 1.0, 1.0, 1.0), (1.0, 0.5, 1.0, 0.5)),
    ("rag", "q-002", "The V-10 valve is DN50 stainless steel.", (0.5, 0.5, 0.5, 0.5), (0.25, 0.25, 0.25, 0.25)),
    ("rag", "q-003", "The M-7 motor draws 5 kW.", (0.0, 0.0, 0.0, 0.0), (1.0, 0.0, 1.0, 0.0)),
    ("finetune", "q-001", "P-200: 16 bar maximum.", (1.0, 0.5, 1.0, 0.5), (1.0, 1.0, 1.0, 1.0)),
    ("finetune", "q-002", "The V-10 is a DN40 brass valve.", (0.75, 0.75, 0.75, 0.75), (0.25, 0.75, 0.25, 0.75)),
    ("finetune", "q-003", None, None, None),  # the generation failed: no answer, so no judge call
]  # fmt: skip
QUESTIONS = {"q-001": ("What is the max pressure of the P-200 pump?", "The P-200 is rated to 16 bar."),
             "q-002": ("What is the V-10 valve made of?", "The V-10 is a DN50 stainless steel valve."),
             "q-003": ("How much power does the M-7 motor draw?", "The M-7 motor draws 5.5 kW.")}  # fmt: skip
SCORES = {answer: {JUDGE_A: dict(zip(CRITERIA, a, strict=True)), JUDGE_B: dict(zip(CRITERIA, b, strict=True))}
          for _, _, answer, a, b in SCRIPT if answer and a is not None and b is not None}  # fmt: skip
# mean over judges of the mean over criteria
EXPECTED_JUDGE_SCORE = {("rag", "q-001"): 0.875, ("rag", "q-002"): 0.375, ("rag", "q-003"): 0.25,
                        ("finetune", "q-001"): 0.875, ("finetune", "q-002"): 0.625, ("finetune", "q-003"): None}
JUDGE_A_ONLY = {("rag", "q-001"): 1.0, ("rag", "q-002"): 0.5, ("rag", "q-003"): 0.0,
                ("finetune", "q-001"): 0.75, ("finetune", "q-002"): 0.75, ("finetune", "q-003"): None}
ANSWERED = sum(1 for *_, a, _ in SCRIPT if a)  # 5 answers to judge, 6 records
# eval_score rows per approach: bertscore_f1, key_fact_match, (retrieval_hit, reciprocal_rank, ndcg for rag),
# judge_score per record,
# plus one 'judge' row per record x judge x criterion (the failed record's are NULL with their error).
SCORE_ROWS = {"rag": 3 * 6 + 3 * 2 * 4, "finetune": 3 * 3 + 3 * 2 * 4}


def record(approach: str, sample_id: str, answer: str | None) -> dict[str, Any]:
    question, reference = QUESTIONS[sample_id]
    failed = answer is None
    retrieved = [] if approach == "finetune" else [
        {"text": f"Catalog page: {reference}", "product_name": f"product-{sample_id}", "score": 0.82,
         "uri": f"s3://{BUCKET}/kb-data/{sample_id}.txt"},
        {"text": "Unrelated accessory page.", "product_name": "accessory", "score": 0.41,
         "uri": f"s3://{BUCKET}/kb-data/accessory.txt"},
    ]  # fmt: skip
    return {
        "sample_id": sample_id, "approach": approach, "product_name": f"product-{sample_id}", "question": question,
        "reference": reference,
        "answer": answer, "error": GENERATION_ERROR if failed else None, "retrieved": retrieved,
        "latency_ms": None if failed else 850.0, "retrieval_ms": None if approach == "finetune" else 120.0,
        "input_tokens": 0 if failed else 420, "output_tokens": 0 if failed else 35,
        "bertscore_f1": None if failed else 0.875, "key_fact_match": None if failed else 1.0,
        "retrieval_hit": None if approach == "finetune" else True,
    }  # fmt: skip


RECORDS = [record(approach, sample_id, answer) for approach, sample_id, answer, _, _ in SCRIPT]


# --- scripted Converse replies ---------------------------------------------------------------------------------


def tool_reply(scores: dict[str, Any], rationale: str) -> dict[str, Any]:
    tool_use = {"toolUseId": "tooluse_1", "name": "record_scores", "input": {**scores, "rationale": rationale}}
    usage = {"inputTokens": 600, "outputTokens": 60, "totalTokens": 660}
    return {"output": {"message": {"role": "assistant", "content": [{"toolUse": tool_use}]}},
            "stopReason": "tool_use", "usage": usage}


def text_reply(text: str) -> dict[str, Any]:
    return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": "end_turn"}


def rationale(model: str, answer: str) -> str:
    return f"{model.split('.')[0]} graded: {answer}"


def answer_of(request: dict[str, Any]) -> str:
    user = request["messages"][0]["content"][0]["text"]
    match = re.search(r"<answer>\n(.*?)\n</answer>", user, re.S)
    assert match is not None
    return match[1]


Reply = Callable[[str], "dict[str, Any] | BaseException"]


def scripted_converse(overrides: dict[str, Reply] | None = None) -> Callable[..., dict[str, Any]]:
    """A ``converse`` replying with SCRIPT's toolUse scores, or with ``overrides[modelId](answer)``."""

    def converse(**request: Any) -> dict[str, Any]:
        model, answer = request["modelId"], answer_of(request)
        if overrides and model in overrides:
            reply = overrides[model](answer)
            if isinstance(reply, BaseException):
                raise reply
            return reply
        return tool_reply(SCORES[answer][model], rationale(model, answer))

    return converse


def throttled(_: str) -> BaseException:
    return ClientError(error_response={"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}},
                       operation_name="Converse")  # fmt: skip


# --- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture
def mock_conn() -> Iterator[mock.MagicMock]:
    with mock.patch.object(BedrockRuntimeHook, "conn") as _conn:
        _conn.converse.side_effect = scripted_converse()
        yield _conn


def put_run(client: Any, layout: RunLayout, records: list[dict[str, Any]]) -> None:
    """A scored run as score_answers leaves it: the dataset snapshot and scored.jsonl."""
    client.put_object(Bucket=BUCKET, Key=layout.dataset, Body=json.dumps({"version": "qa-abc123", "items": []}))
    body = "".join(json.dumps(r) + "\n" for r in records)
    client.put_object(Bucket=BUCKET, Key=layout.scored, Body=body.encode("utf-8"))


@pytest.fixture
def s3() -> Iterator[Any]:
    import os

    import boto3
    from moto import mock_aws

    from tailor.config import load_settings

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing")  # fmt: skip
        client.create_bucket(Bucket=BUCKET)
        put_run(client, LAYOUT, RECORDS)
        cfg = load_settings(env={**os.environ, "TAILOR__AWS__BUCKET": BUCKET})
        with mock.patch.object(S3Hook, "get_conn", return_value=client), \
                mock.patch.object(evaluation, "settings_and_s3", return_value=(cfg, client)):  # fmt: skip
            yield client


@pytest.fixture
def warehouse_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "warehouse.db"
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", "sqlite://" + quote(str(path), safe=""))
    return path


@pytest.fixture
def context() -> dict[str, Any]:
    return {"dag_run": SimpleNamespace(run_id=RUN_ID, run_after=STARTED, start_date=STARTED), "run_id": RUN_ID}


def make_operator(layout: RunLayout = LAYOUT, **kwargs: Any) -> LLMJudgeOperator:
    params: dict[str, Any] = {
        "task_id": "judge_answers", "answers_uri": layout.uri(layout.scored), "output_uri": layout.uri(layout.judged),
        "checkpoint_uri": layout.uri(layout.judgements), "judge_model_ids": list(JUDGES), "concurrency": 4,
        "aws_conn_id": "aws_default",
    }  # fmt: skip
    params.update(kwargs)
    return LLMJudgeOperator(**params)


def summarize(judged: dict[str, Any], context: dict[str, Any], layout: RunLayout = LAYOUT) -> dict[str, Any]:
    """The ``summarize_results`` task after the judge, as the DAG runs it."""
    return evaluation.summarize_results.function({"prefix": layout.prefix, "versions": VERSIONS}, judged, **context)


def load(summarized: dict[str, Any], context: dict[str, Any], conn_id: str = CONN_ID) -> dict[str, int]:
    """The ``load_warehouse`` task, as the DAG runs it."""
    return evaluation.load_warehouse.function(summarized, conn_id, **context)


def stages(context: dict[str, Any], layout: RunLayout = LAYOUT, **kwargs: Any) -> dict[str, Any]:
    """What the DAG runs after scoring: judge_answers -> summarize_results -> load_warehouse; the judge's XCom."""
    judged = make_operator(layout, **kwargs).execute(context)
    load(summarize(judged, context, layout), context)
    return judged


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def snapshot(db: Path, approach: str | None = None) -> tuple[list, list]:
    """eval_run (without written_at) and eval_score rows, optionally of one approach."""
    where, params = ("WHERE approach = ?", (approach,)) if approach else ("", ())
    runs = query(db, f"SELECT * FROM eval_run {where} ORDER BY run_id, approach", params)
    runs = [row[:-1] for row in runs]  # written_at is the last column and changes on every write
    scores = query(db, f"SELECT * FROM eval_score {where} "
                       "ORDER BY run_id, approach, sample_id, metric, judge_model, criterion", params)  # fmt: skip
    return runs, scores


def read_output(s3: Any, uri: str = OUTPUT_URI) -> dict[tuple[str, str], dict[str, Any]]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    rows = [json.loads(line) for line in body.splitlines()]
    assert len(rows) == len(RECORDS)
    return {(r["approach"], r["sample_id"]): r for r in rows}


def calls_by_model(mock_conn: mock.MagicMock) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in mock_conn.converse.call_args_list:
        counts[call.kwargs["modelId"]] = counts.get(call.kwargs["modelId"], 0) + 1
    return counts


def assert_no_sentinels(db: Path) -> None:
    """No -1 stands in for a missing score anywhere in the warehouse; scores and means stay in [0, 1].

    (A t-interval bound of a small sample may legitimately fall outside [0, 1], so CI columns are only checked
    for the -1 sentinel.)"""
    for table in ("eval_run", "eval_score"):
        for row in query(db, f"SELECT * FROM {table}"):
            assert -1 not in row and "-1" not in row, (table, row)
    assert query(db, "SELECT COUNT(*) FROM eval_score WHERE score < 0 OR score > 1") == [(0,)]
    means = query(db, "SELECT judge_score_mean, bertscore_f1_mean, key_fact_match FROM eval_run")
    assert all(v is None or 0.0 <= v <= 1.0 for row in means for v in row)


# --- construction and templating -------------------------------------------------------------------------------


def test_template_fields() -> None:
    op = make_operator()
    assert tuple(op.template_fields) == ("answers_uri", "output_uri", "judge_model_ids", "checkpoint_uri")
    for field in op.template_fields:
        assert hasattr(op, field), f"template field {field!r} is not an attribute"


def test_init() -> None:
    op = make_operator(criteria=["correctness", "faithfulness"])
    assert (op.answers_uri, op.output_uri, op.judge_model_ids) == (ANSWERS_URI, OUTPUT_URI, list(JUDGES))
    assert op.checkpoint_uri == f"s3://{BUCKET}/eval/2026-11-20/judgements/"
    assert op.criteria == ("correctness", "faithfulness")
    assert (op.concurrency, op.aws_conn_id) == (4, "aws_default")
    defaults = LLMJudgeOperator(task_id="j", answers_uri=ANSWERS_URI, output_uri=OUTPUT_URI, judge_model_ids=JUDGE_A)
    assert defaults.checkpoint_uri is None and defaults.criteria is None


def test_template_fields_render() -> None:
    op = make_operator(answers_uri="s3://{{ params.bucket }}/eval/{{ ds }}/scored.jsonl",
                       checkpoint_uri="s3://{{ params.bucket }}/eval/{{ ds }}/judgements/",
                       judge_model_ids="{{ params.judges }}",
                       params={"bucket": BUCKET, "judges": f"{JUDGE_A}, {JUDGE_B}"})  # fmt: skip
    op.render_template_fields({"params": cast(dict[str, Any], op.params), "ds": "2026-11-20", "ds_nodash": "20261120",
                               "run_id": RUN_ID})
    assert op.answers_uri == ANSWERS_URI
    assert op.checkpoint_uri == LAYOUT.uri(LAYOUT.judgements)
    assert op._judges() == list(JUDGES)


# --- happy path ------------------------------------------------------------------------------------------------


def test_execute_writes_judged_jsonl(mock_conn, s3, warehouse_db, context) -> None:
    result = make_operator().execute(context)

    judged = read_output(s3)
    for (approach, sample_id), expected in EXPECTED_JUDGE_SCORE.items():
        row = judged[(approach, sample_id)]
        assert row["judge_score"] == expected, (approach, sample_id)
        # the scored record's own fields are carried through unchanged
        original = next(r for r in RECORDS if (r["approach"], r["sample_id"]) == (approach, sample_id))
        assert {k: row[k] for k in original} == original
        assert [j["judge_model"] for j in row["judgements"]] == list(JUDGES)
    q1 = judged[("rag", "q-001")]
    assert q1["judgements"] == [
        {"judge_model": JUDGE_A, "scores": SCORES[q1["answer"]][JUDGE_A], "rationale": rationale(JUDGE_A, q1["answer"]),
         "error": None, "replied": True},
        {"judge_model": JUDGE_B, "scores": SCORES[q1["answer"]][JUDGE_B], "rationale": rationale(JUDGE_B, q1["answer"]),
         "error": None, "replied": True},
    ]  # fmt: skip
    assert q1["judge_criteria"] == {"correctness": 1.0, "completeness": 0.75, "faithfulness": 1.0,
                                    "no_hallucination": 0.75}  # fmt: skip
    failed = judged[("finetune", "q-003")]
    assert failed["judge_criteria"] == dict.fromkeys(CRITERIA)
    assert [(j["scores"], j["error"]) for j in failed["judgements"]] == [(dict.fromkeys(CRITERIA),
                                                                           "no answer to judge")] * 2

    assert result["uri"] == OUTPUT_URI
    assert result["judge_calls"] == len(RECORDS) * len(JUDGES)
    assert result["judge_errors"] == len(JUDGES)  # only the record without an answer
    pair = f"{JUDGE_A} vs {JUDGE_B}"
    assert result["agreement"] == {"pairs": {pair: {"mean_abs_diff": pytest.approx(0.3), "n": ANSWERED}},
                                   "mean_abs_diff": pytest.approx(0.3), "n": ANSWERED}  # fmt: skip
    # the record whose generation failed is never sent to a judge
    assert mock_conn.converse.call_count == ANSWERED * len(JUDGES)
    assert calls_by_model(mock_conn) == {JUDGE_A: ANSWERED, JUDGE_B: ANSWERED}


def test_execute_writes_warehouse_rows(mock_conn, s3, warehouse_db, context) -> None:
    stages(context)

    runs = query(warehouse_db, "SELECT approach, run_id, n_samples, n_errors, judge_score_mean, judge_models, "
                               "dataset_version, prompt_version, generator_model, status, dag_run_started_at "
                               "FROM eval_run ORDER BY approach")  # fmt: skip
    judges = f"{JUDGE_A},{JUDGE_B}"
    assert runs == [
        ("finetune", RUN_ID, 3, 1, pytest.approx(0.75), judges, "qa-abc123", "p1", "smollm2-ft-7", "partial",
         "2026-11-20 10:00:00.000000+00:00"),
        ("rag", RUN_ID, 3, 0, pytest.approx(0.5), judges, "qa-abc123", "p1", "amazon.nova-lite-v1:0", "complete",
         "2026-11-20 10:00:00.000000+00:00"),
    ]  # fmt: skip
    counts = query(warehouse_db, "SELECT approach, COUNT(*) FROM eval_score GROUP BY approach ORDER BY approach")
    assert counts == sorted(SCORE_ROWS.items())

    judge_rows = query(warehouse_db, "SELECT approach, sample_id, judge_model, criterion, score, rationale, error "
                                     "FROM eval_score WHERE metric = 'judge'")  # fmt: skip
    assert len(judge_rows) == len(RECORDS) * len(JUDGES) * len(CRITERIA)
    expected: set[tuple[str, str, str, str, float | None, str | None, str | None]] = set()
    for approach, sample_id, answer, _, _ in SCRIPT:
        for judge in JUDGES:
            for criterion in CRITERIA:
                if answer is None:
                    expected.add((approach, sample_id, judge, criterion, None, None, "no answer to judge"))
                else:
                    expected.add((approach, sample_id, judge, criterion, SCORES[answer][judge][criterion],
                                  rationale(judge, answer), None))
    assert set(judge_rows) == expected

    overall = query(warehouse_db, "SELECT approach, sample_id, score, error FROM eval_score "
                                  "WHERE metric = 'judge_score'")  # fmt: skip
    assert {(a, s): (v, e) for a, s, v, e in overall} == {
        key: (value, GENERATION_ERROR if value is None else None) for key, value in EXPECTED_JUDGE_SCORE.items()
    }
    # eval_run's mean is the mean of its eval_score rows (NULLs excluded)
    avg = query(warehouse_db, "SELECT r.approach, r.judge_score_mean, AVG(s.score) FROM eval_run r JOIN eval_score s "
                              "ON s.run_id = r.run_id AND s.approach = r.approach AND s.metric = 'judge_score' "
                              "GROUP BY r.approach, r.judge_score_mean")  # fmt: skip
    assert all(mean == pytest.approx(average) for _, mean, average in avg) and len(avg) == 2
    assert_no_sentinels(warehouse_db)


def test_converse_requests_are_blinded_and_force_the_scoring_tool(mock_conn, s3, warehouse_db, context) -> None:
    make_operator().execute(context)

    answers = {answer: (approach, sample_id) for approach, sample_id, answer, _, _ in SCRIPT if answer}
    seen = set()
    for call in mock_conn.converse.call_args_list:
        request = call.kwargs
        answer = answer_of(request)
        approach, sample_id = answers[answer]
        seen.add((request["modelId"], approach, sample_id))
        text = request["system"][0]["text"] + request["messages"][0]["content"][0]["text"]
        assert not re.search(r"\b(rag|finetune|fine-tun\w*|hybrid|retrieval)\b", text, re.I), text
        assert sample_id not in text
        assert request["toolConfig"]["toolChoice"] == {"tool": {"name": "record_scores"}}
        schema = request["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]
        assert schema["required"] == [*CRITERIA, "rationale"]
        assert request["inferenceConfig"]["temperature"] == 0.0
        # the retrieved passages are the context of rag answers; finetune answers have none
        user = request["messages"][0]["content"][0]["text"]
        assert ("<context>" in user) is (approach == "rag")
        if approach == "rag":
            assert f"Catalog page: {QUESTIONS[sample_id][1]}" in text and "Unrelated accessory page." in text
    assert seen == {(m, a, s) for a, s, ans, _, _ in SCRIPT if ans for m in JUDGES}


def test_judge_model_ids_as_a_comma_separated_string(mock_conn, s3, warehouse_db, context) -> None:
    result = stages(context, judge_model_ids=f" {JUDGE_A} , {JUDGE_B}")
    assert (result["partial"], result["judges_answered"]) == (False, [JUDGE_A, JUDGE_B])
    assert calls_by_model(mock_conn) == {JUDGE_A: ANSWERED, JUDGE_B: ANSWERED}
    assert result["judge_calls"] == len(RECORDS) * 2
    assert query(warehouse_db, "SELECT DISTINCT judge_models FROM eval_run") == [(f"{JUDGE_A},{JUDGE_B}",)]


def test_the_judge_writes_only_the_jsonl_and_its_checkpoint(mock_conn, s3, warehouse_db, context) -> None:
    result = make_operator(judge_model_ids=[JUDGE_A]).execute(context)
    judged = read_output(s3)
    assert {k: r["judge_score"] for k, r in judged.items()} == JUDGE_A_ONLY
    assert result["agreement"] is None  # one judge: nothing to agree with
    assert (result["partial"], result["judges_required"]) == (False, 1)  # one judge asked on purpose
    assert result["judge_calls"] == len(RECORDS)
    assert not warehouse_db.exists()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {k for k in keys if not k.startswith(LAYOUT.judgements)} == {LAYOUT.dataset, LAYOUT.scored, LAYOUT.judged}
    assert len(keys) > 3  # the checkpoint's part(s)


# --- faults: throttling, prose, out-of-range -------------------------------------------------------------------

FAULTS = [
    pytest.param(throttled, r"^ThrottlingException: Rate exceeded$", 1, id="throttling-client-error"),
    pytest.param(lambda a: text_reply("This answer looks mostly right to me and is well written."),
                 r"^unparseable judge reply: This answer looks mostly right", 3, id="prose-without-scores"),
    pytest.param(lambda a: text_reply(""), r"^empty judge reply$", 3, id="empty-reply"),
    pytest.param(lambda a: tool_reply({"correctness": -1, "completeness": 7, "faithfulness": 1.5,
                                       "no_hallucination": -0.5}, "all bad"),
                 r"correctness: score -1\.0 is outside \[0, 1\].*no_hallucination: score -0\.5 is outside", 1,
                 id="tool-use-out-of-range"),
    pytest.param(lambda a: text_reply("correctness: -1\ncompleteness: -1\nfaithfulness: 11\nno_hallucination: -1"),
                 r"correctness: score -1 is outside \[0, 1\].*faithfulness: score 11 is outside", 1,
                 id="prose-lines-with-sentinel-scores"),
    pytest.param(lambda a: tool_reply({"correctness": "n/a", "completeness": None, "faithfulness": True,
                                       "no_hallucination": "high"}, "no numbers"),
                 r"correctness: non-numeric score 'n/a'.*no_hallucination: non-numeric", 1,
                 id="tool-use-non-numeric"),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "error_pattern", "calls_per_answer"), FAULTS)
def test_a_failing_judge_is_stored_as_null_with_its_error(
    mock_conn, s3, warehouse_db, context, fault: Reply, error_pattern: str, calls_per_answer: int
) -> None:
    mock_conn.converse.side_effect = scripted_converse({JUDGE_B: fault})

    result = stages(context)  # the run completes

    assert calls_by_model(mock_conn) == {JUDGE_A: ANSWERED, JUDGE_B: ANSWERED * calls_per_answer}
    assert result["judge_calls"] == len(RECORDS) * len(JUDGES)
    assert result["judge_errors"] == len(RECORDS) + 1  # every judge B call, and judge A on the failed record
    # the panel shrank to one judge: the run is partial (check_complete fails it), not silently green
    assert (result["partial"], result["judges_answered"], result["judges_required"]) == (True, [JUDGE_A], 2)
    pair = f"{JUDGE_A} vs {JUDGE_B}"
    assert result["agreement"] == {"pairs": {pair: {"mean_abs_diff": None, "n": 0}}, "mean_abs_diff": None, "n": 0}

    # judge B is left out of every mean: the sample score is judge A's alone
    judged = read_output(s3)
    assert {k: r["judge_score"] for k, r in judged.items()} == JUDGE_A_ONLY
    for row in judged.values():
        b = row["judgements"][1]
        assert b["judge_model"] == JUDGE_B and b["scores"] == dict.fromkeys(CRITERIA)
        if row["answer"] is not None:
            assert re.search(error_pattern, b["error"]), b["error"]
            assert row["judge_criteria"] == SCORES[row["answer"]][JUDGE_A]

    rows_b = query(warehouse_db, "SELECT sample_id, approach, score, error FROM eval_score "
                                 "WHERE metric = 'judge' AND judge_model = ?", (JUDGE_B,))  # fmt: skip
    assert len(rows_b) == len(RECORDS) * len(CRITERIA)
    assert all(score is None for _, _, score, _ in rows_b)
    answered = [e for s, a, _, e in rows_b if (a, s) != ("finetune", "q-003")]
    assert len(answered) == ANSWERED * len(CRITERIA)
    assert all(re.search(error_pattern, e) for e in answered), answered[:1]
    rows_a = query(warehouse_db, "SELECT COUNT(score) FROM eval_score WHERE metric = 'judge' AND judge_model = ?",
                   (JUDGE_A,))  # fmt: skip
    assert rows_a == [(ANSWERED * len(CRITERIA),)]
    means = query(warehouse_db, "SELECT approach, judge_score_mean, status FROM eval_run ORDER BY approach")
    assert means == [("finetune", pytest.approx(0.75), "partial"), ("rag", pytest.approx(0.5), "complete")]
    assert_no_sentinels(warehouse_db)


def test_one_out_of_range_criterion_is_null_and_left_out_of_the_means(mock_conn, s3, warehouse_db, context) -> None:
    partial = {"correctness": 1.0, "completeness": 7, "faithfulness": 0.5, "no_hallucination": 0.5}
    mock_conn.converse.side_effect = scripted_converse({JUDGE_B: lambda a: tool_reply(partial, "one bad")})

    stages(context)

    judged = read_output(s3)
    row = judged[("rag", "q-001")]  # judge A: 1.0; judge B: mean(1.0, 0.5, 0.5) = 2/3
    assert row["judge_score"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert row["judge_criteria"]["completeness"] == 1.0  # judge A's alone
    assert row["judge_criteria"]["correctness"] == 1.0 and row["judge_criteria"]["faithfulness"] == 0.75
    stored = query(warehouse_db, "SELECT criterion, score, error FROM eval_score WHERE metric = 'judge' "
                                 "AND judge_model = ? AND approach = 'rag' AND sample_id = 'q-001' "
                                 "ORDER BY criterion", (JUDGE_B,))  # fmt: skip
    assert [(c, s) for c, s, _ in stored] == [("completeness", None), ("correctness", 1.0), ("faithfulness", 0.5),
                                              ("no_hallucination", 0.5)]  # fmt: skip
    assert all(re.match(r"completeness: score 7\.0 is outside \[0, 1\]", e) for _, _, e in stored)
    assert_no_sentinels(warehouse_db)


# --- idempotency and failures mid-write ------------------------------------------------------------------------


def test_running_the_stages_three_times_leaves_one_set_of_rows_and_pays_once(mock_conn, s3, warehouse_db,
                                                                               context) -> None:
    stages(context)
    first = snapshot(warehouse_db)
    judged = read_output(s3)
    assert len(first[0]) == 2 and len(first[1]) == sum(SCORE_ROWS.values())
    for _ in range(2):
        stages(context)
        assert snapshot(warehouse_db) == first
        assert read_output(s3) == judged
    assert query(warehouse_db, "SELECT COUNT(*) FROM eval_run") == [(2,)]
    assert query(warehouse_db, "SELECT COUNT(*) FROM eval_score") == [(sum(SCORE_ROWS.values()),)]
    assert mock_conn.converse.call_count == ANSWERED * len(JUDGES)  # the re-runs re-used every judgement


class JudgeCrash(Exception):
    """Not a call error (those are the call's judgement): the task dies, as on a bug or an out-of-memory kill."""


def test_a_judge_task_retried_after_dying_mid_judging_pays_only_for_what_was_not_judged(mock_conn, s3, warehouse_db,
                                                                                      context) -> None:
    clean = scripted_converse()
    calls = {"n": 0}

    def crashes_on_the_sixth_call(**request: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 6:
            raise JudgeCrash("the task process dies")
        return clean(**request)

    mock_conn.converse.side_effect = crashes_on_the_sixth_call
    with pytest.raises(JudgeCrash):
        make_operator(concurrency=1).execute(context)
    first_try = mock_conn.converse.call_count
    assert first_try >= 6  # the sixth call crashed; calls already queued may have run (paid: checkpointed too)
    with pytest.raises(s3.exceptions.NoSuchKey):
        read_output(s3)  # nothing half-written

    mock_conn.converse.side_effect = clean
    result = stages(context)  # the retry, then the rest of the DAG

    seen = [(c.kwargs["modelId"], answer_of(c.kwargs)) for c in mock_conn.converse.call_args_list]
    assert len(set(seen)) == ANSWERED * len(JUDGES)  # each (judge, answer) paid exactly once across the tries...
    assert len(seen) == len(set(seen)) + 1  # ...but the crashed call, which was asked again
    assert {k: r["judge_score"] for k, r in read_output(s3).items()} == EXPECTED_JUDGE_SCORE
    assert result["judge_errors"] == len(JUDGES) and not result["partial"]
    assert snapshot(warehouse_db)[1] and query(warehouse_db, "SELECT COUNT(*) FROM eval_run") == [(2,)]


def test_a_network_error_in_one_judge_call_loses_nothing_else_and_only_it_is_asked_again(mock_conn, s3, warehouse_db,
                                                                                       context) -> None:
    from botocore.exceptions import ReadTimeoutError

    clean, target = scripted_converse(), SCRIPT[1][2]  # judge B on rag q-002

    def one_timeout(**request: Any) -> dict[str, Any]:
        if request["modelId"] == JUDGE_B and answer_of(request) == target:
            raise ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com/model/x/converse")
        return clean(**request)

    mock_conn.converse.side_effect = one_timeout
    result = stages(context)  # the task succeeds: one NULL judgement, with its error

    assert mock_conn.converse.call_count == ANSWERED * len(JUDGES)
    assert result["judge_errors"] == len(JUDGES) + 1 and not result["partial"]
    row = read_output(s3)[("rag", "q-002")]
    assert row["judgements"][1]["scores"] == dict.fromkeys(CRITERIA)
    assert row["judgements"][1]["error"].startswith("ReadTimeoutError: Read timeout on endpoint URL")
    assert row["judge_score"] == 0.5  # judge A's alone
    others = {k: r["judge_score"] for k, r in read_output(s3).items() if k != ("rag", "q-002")}
    assert others == {k: v for k, v in EXPECTED_JUDGE_SCORE.items() if k != ("rag", "q-002")}
    stored = query(warehouse_db, "SELECT COUNT(*) FROM eval_score WHERE metric = 'judge' AND error LIKE "
                                 "'ReadTimeoutError%'")  # fmt: skip
    assert stored == [(len(CRITERIA),)]

    mock_conn.converse.side_effect = clean
    stages(context)  # a retry (or a clear of the judge task) asks that one call again, nothing else
    assert mock_conn.converse.call_count == ANSWERED * len(JUDGES) + 1
    assert read_output(s3)[("rag", "q-002")]["judge_score"] == EXPECTED_JUDGE_SCORE[("rag", "q-002")]


class ExecutemanyFailsHook:
    """Wraps the warehouse's SqliteHook: its cursors run the DELETE, then fail in the bulk INSERT."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def get_conn(self) -> Any:
        conn = self.inner.get_conn()

        class Cursor:
            def __init__(self) -> None:
                self._cur = conn.cursor()

            def execute(self, *args: Any) -> Any:
                return self._cur.execute(*args)

            def executemany(self, *args: Any) -> Any:
                raise sqlite3.OperationalError("disk I/O error (simulated)")

        class Conn:
            in_transaction = property(lambda self: conn.in_transaction)
            execute, commit, rollback, close = conn.execute, conn.commit, conn.rollback, conn.close

            def cursor(self) -> Cursor:
                return Cursor()

        return Conn()


def fail_before_write(real: Callable, warehouse: Warehouse, run_row: dict, rows: list) -> int:
    raise ConnectionError("warehouse connection reset")


def fail_in_bulk_insert(real: Callable, warehouse: Warehouse, run_row: dict, rows: list) -> int:
    return real(Warehouse(ExecutemanyFailsHook(warehouse.hook), warehouse.dialect), run_row, rows)


WAREHOUSE_FAULTS = [
    pytest.param(fail_before_write, ConnectionError, "connection reset", id="write-run-raises"),
    pytest.param(fail_in_bulk_insert, sqlite3.OperationalError, "simulated", id="executemany-raises-after-delete"),
]


def failing_on(approach: str, fault: Callable) -> Callable:
    real = Warehouse.write_run

    def write_run(self: Warehouse, run_row: dict, rows: list) -> int:
        if run_row["approach"] == approach:
            return fault(real, self, run_row, rows)
        return real(self, run_row, rows)

    return write_run


@pytest.mark.parametrize(("fault", "exc", "message"), WAREHOUSE_FAULTS)
def test_warehouse_failing_mid_write_keeps_written_approach_and_a_retry_completes_without_a_model_call(
    mock_conn, s3, warehouse_db, context, fault, exc, message
) -> None:
    summarized = summarize(make_operator().execute(context), context)
    paid = mock_conn.converse.call_count
    assert paid == ANSWERED * len(JUDGES)
    with mock.patch.object(Warehouse, "write_run", failing_on("finetune", fault)), pytest.raises(exc, match=message):
        load(summarized, context)  # rag is written first, then finetune fails

    assert query(warehouse_db, "SELECT approach, status FROM eval_run") == [("rag", "complete")]
    assert query(warehouse_db, "SELECT approach, COUNT(*) FROM eval_score GROUP BY approach") == [
        ("rag", SCORE_ROWS["rag"])
    ]
    rag_after_failure = snapshot(warehouse_db, "rag")

    load(summarized, context)  # the retry of load_warehouse
    assert mock_conn.converse.call_count == paid  # zero new model calls

    assert query(warehouse_db, "SELECT approach, status FROM eval_run ORDER BY approach") == [
        ("finetune", "partial"), ("rag", "complete")
    ]  # fmt: skip
    counts = query(warehouse_db, "SELECT approach, COUNT(*) FROM eval_score GROUP BY approach ORDER BY approach")
    assert counts == sorted(SCORE_ROWS.items())
    assert snapshot(warehouse_db, "rag") == rag_after_failure


def test_a_failed_rewrite_keeps_the_previous_rows_of_that_approach(mock_conn, s3, warehouse_db, context) -> None:
    stages(context)
    before = snapshot(warehouse_db)
    # a new judge panel changes the scores of the rerun (judge C is paid for; A and B are re-used)
    mock_conn.converse.side_effect = scripted_converse({"judge-c": lambda a: tool_reply(
        dict.fromkeys(CRITERIA, 0.0), "strict")})

    with mock.patch.object(Warehouse, "write_run", failing_on("finetune", fail_in_bulk_insert)), \
            pytest.raises(sqlite3.OperationalError, match="simulated"):  # fmt: skip
        stages(context, judge_model_ids=[*JUDGES, "judge-c"])
    assert mock_conn.converse.call_count == ANSWERED * (len(JUDGES) + 1)

    assert snapshot(warehouse_db, "finetune") == (
        [r for r in before[0] if r[1] == "finetune"], [r for r in before[1] if r[1] == "finetune"]
    )  # the DELETE before the failed INSERT was rolled back
    assert snapshot(warehouse_db, "rag") != ([r for r in before[0] if r[1] == "rag"],
                                             [r for r in before[1] if r[1] == "rag"])  # rag was rewritten


# --- dag_run_started_at ----------------------------------------------------------------------------------------


def test_dag_run_started_at_is_run_after_so_a_cleared_old_run_does_not_become_the_latest(
    mock_conn, s3, warehouse_db, context
) -> None:
    """sql/ddl/001_eval_run.sql documents ``dag_run_started_at`` as ``dag_run.run_after (UTC)``.

    Clearing a finished DAG run sets its ``start_date`` to the time of the clear (airflow.models.taskinstance,
    clear_task_instances), so the column must not follow ``start_date``: a re-run of last week's run would
    otherwise be dated after this week's run and displace it in ``v_eval_latest``.
    """
    complete = RunLayout(BUCKET, "eval/complete/")  # every approach complete: eligible as latest
    put_run(s3, complete, [r for r in RECORDS if not r["error"]])
    newer = {"dag_run": SimpleNamespace(run_id="scheduled__2026-11-27", run_after=datetime(2026, 11, 27, 6, 0,
                                        tzinfo=UTC), start_date=datetime(2026, 11, 27, 6, 0, 5,
                                        tzinfo=UTC)), "run_id": "scheduled__2026-11-27"}  # fmt: skip
    stages(newer, complete)
    cleared = {"dag_run": SimpleNamespace(run_id=RUN_ID, run_after=STARTED,
                                          start_date=datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
               "run_id": RUN_ID}  # fmt: skip
    stages(cleared, complete)  # last week's run, cleared and re-run on Dec 1

    started = query(warehouse_db, "SELECT DISTINCT dag_run_started_at FROM eval_run WHERE run_id = ?", (RUN_ID,))
    assert started == [("2026-11-20 10:00:00.000000+00:00",)], "dag_run_started_at should be dag_run.run_after"
    latest = query(warehouse_db, "SELECT DISTINCT run_id FROM v_eval_latest")
    assert latest == [("scheduled__2026-11-27",)]


# --- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "judge_model_ids",
    [pytest.param("", id="empty-string"), pytest.param([], id="empty-list"), pytest.param(" , ", id="only-commas"),
     pytest.param([JUDGE_A, ""], id="list-with-blank"), pytest.param(f"{JUDGE_A},,{JUDGE_B}", id="double-comma")],
)  # fmt: skip
def test_invalid_judge_model_ids_raise_before_any_work(mock_conn, s3, warehouse_db, context, judge_model_ids) -> None:
    with pytest.raises(ValueError, match="judge_model_ids must name at least one model"):
        make_operator(judge_model_ids=judge_model_ids).execute(context)
    mock_conn.converse.assert_not_called()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert sorted(keys) == sorted([LAYOUT.dataset, LAYOUT.scored])
    assert not warehouse_db.exists()


@pytest.mark.parametrize(
    "answers_uri",
    [pytest.param("/data/eval/scored.jsonl", id="local-path"), pytest.param("file:///data/scored.jsonl", id="file"),
     pytest.param(f"gs://{BUCKET}/scored.jsonl", id="gcs"), pytest.param(f"S3:/{BUCKET}/scored.jsonl", id="typo")],
)  # fmt: skip
def test_non_s3_answers_uri_is_a_value_error(mock_conn, s3, warehouse_db, context, answers_uri: str) -> None:
    with pytest.raises(ValueError, match="expected an s3:// URI") as err:
        make_operator(answers_uri=answers_uri).execute(context)
    assert repr(answers_uri) in str(err.value)
    mock_conn.converse.assert_not_called()
    assert not warehouse_db.exists()


@pytest.mark.parametrize("field", ["output_uri", "checkpoint_uri"])
def test_a_non_s3_output_or_checkpoint_uri_is_a_value_error_before_any_call(mock_conn, s3, warehouse_db, context,
                                                                             field: str) -> None:
    with pytest.raises(ValueError, match="expected an s3:// URI, got '/tmp/judged'"):
        overrides: dict[str, Any] = {field: "/tmp/judged"}
        make_operator(**overrides).execute(context)
    mock_conn.converse.assert_not_called()


@pytest.mark.parametrize(
    ("conn_uri", "conn_type"),
    [pytest.param("http://warehouse.example.com:8080", "http", id="http"),
     pytest.param(json.dumps({"conn_type": "aws", "extra": {"region_name": "us-east-1"}}), "aws", id="aws-json"),
     pytest.param("mysql://user:pw@db.example.com/eval", "mysql", id="mysql")],
)  # fmt: skip
def test_non_sql_warehouse_connection_is_a_value_error_naming_it(
    mock_conn, s3, warehouse_db, context, monkeypatch, conn_uri: str, conn_type: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TAILOR_WAREHOUSE_OTHER", conn_uri)
    summarized = summarize(make_operator().execute(context), context)
    with pytest.raises(ValueError, match="warehouse connection 'tailor_warehouse_other'") as err:
        load(summarized, context, "tailor_warehouse_other")
    assert f"has type {conn_type!r}" in str(err.value)
    assert not warehouse_db.exists()


# --- the verdict after the judge: paired comparisons, judge agreement, the published files -----------------------


def test_summaries_carry_the_paired_verdict_and_judge_agreement_into_csv_and_report(mock_conn, s3, warehouse_db,
                                                                                    context) -> None:
    summarized = summarize(make_operator().execute(context), context)
    document = json.loads(s3.get_object(Bucket=BUCKET, Key=LAYOUT.summary)["Body"].read())
    pairs = [(p["metric"], p["approach_a"], p["approach_b"]) for p in document["paired"]]
    assert pairs == [(m, "rag", "finetune") for m in ("judge_score", "bertscore_f1", "key_fact_match")]
    judge = document["paired"][0]
    assert judge["n"] == 2  # q-001 and q-002: finetune q-003 has no answer
    assert judge["mean_diff"] == pytest.approx(((0.875 - 0.875) + (0.375 - 0.625)) / 2)
    assert not judge["significant"] and judge["verdict"].startswith("no significant difference on judge_score")
    assert set(document["judge_agreement"]) == {*CRITERIA, "overall"}
    assert document["judge_agreement"]["overall"] is not None

    published = evaluation.publish_results.function(summarized, **context)
    assert published["paired_csv"] == LAYOUT.uri(LAYOUT.paired_csv)
    rows = s3.get_object(Bucket=BUCKET, Key=LAYOUT.paired_csv)["Body"].read().decode().splitlines()
    assert rows[0].startswith("metric,approach_a,approach_b,n,mean_a,mean_b,mean_diff,ci95_low") and len(rows) == 4
    html = s3.get_object(Bucket=BUCKET, Key=LAYOUT.report)["Body"].read().decode()
    assert "Verdict, question by question" in html and "How far the judges agree" in html
    assert "no significant difference on judge_score at n = 2" in html
    written = load(summarized, context)
    assert (written["eval_paired"], written["eval_judge_agreement"]) == (3, len(CRITERIA) + 1)
    assert query(warehouse_db, "SELECT metric, n, significant FROM eval_paired ORDER BY metric") == [
        ("bertscore_f1", 2, 0), ("judge_score", 2, 0), ("key_fact_match", 2, 0)]
    assert query(warehouse_db, "SELECT COUNT(alpha) FROM eval_judge_agreement WHERE judge_models = ?",
                 (",".join(JUDGES),)) == [(len(CRITERIA) + 1,)]
    assert mock_conn.converse.call_count == ANSWERED * len(JUDGES)  # publishing and loading paid for nothing


# --- judge calibration against the golden set, and drift -----------------------------------------------------------


def golden_converse(noise: float = 0.0) -> Callable[..., dict[str, Any]]:
    """A judge that gives each golden answer its human scores (moved by ``noise``, kept in [0, 1])."""
    from tailor.golden import load_golden

    human = {item.answer: item.human for item in load_golden()}

    def converse(**request: Any) -> dict[str, Any]:
        scores = human[answer_of(request)]
        moved = {c: min(1.0, max(0.0, v + (noise if v < 0.5 else -noise))) for c, v in scores.items()}
        return tool_reply(moved, "calibration")

    return converse


def calibrate(context: dict[str, Any]) -> dict[str, Any]:
    return evaluation.calibrate_judges.function(params={"judge_models": list(JUDGES), "calibrate_judges": True},
                                                **context)


def test_calibration_scores_the_golden_set_once_and_drift_is_found_against_the_last_run(mock_conn, s3, warehouse_db,
                                                                                        ) -> None:
    first = {"dag_run": SimpleNamespace(run_after=STARTED, start_date=STARTED), "run_id": "first"}
    second = {"dag_run": SimpleNamespace(run_after=STARTED, start_date=STARTED), "run_id": "second"}
    mock_conn.converse.side_effect = golden_converse()
    calibrated = calibrate(first)
    items = calibrated["items"]
    assert items == 6 and calibrated["overall_alpha"] == {JUDGE_A: 1.0, JUDGE_B: 1.0}  # LOCAL_SCALE: 1 per kind
    assert mock_conn.converse.call_count == items * len(JUDGES)
    calibrate(first)  # a retry re-uses the checkpoint
    assert mock_conn.converse.call_count == items * len(JUDGES)

    layout_1 = RunLayout.for_run(BUCKET, "eval/", "first")
    put_run(s3, layout_1, RECORDS)
    mock_conn.converse.side_effect = scripted_converse()
    summarized = evaluation.summarize_results.function(
        {"prefix": layout_1.prefix, "versions": VERSIONS}, make_operator(layout_1).execute(first), calibrated,
        **first)
    assert summarized["judge_drift"] == []
    load(summarized, first)
    rows = query(warehouse_db, "SELECT judge_model, criterion, alpha, n FROM eval_judge_calibration "
                               "WHERE criterion = 'overall' ORDER BY judge_model")
    assert rows == [(JUDGE_A, "overall", 1.0, 6), (JUDGE_B, "overall", 1.0, 6)]

    mock_conn.converse.side_effect = golden_converse(noise=0.5)  # the judges drifted: far from the humans
    calibrated = calibrate(second)
    layout_2 = RunLayout.for_run(BUCKET, "eval/", "second")
    put_run(s3, layout_2, RECORDS)
    mock_conn.converse.side_effect = scripted_converse()
    judged = make_operator(layout_2).execute(second)
    for _ in range(2):  # the same findings on a retry: the pointer names this run, the baseline is the one before
        summarized = evaluation.summarize_results.function(
            {"prefix": layout_2.prefix, "versions": VERSIONS}, judged, calibrated, **second)
        assert len(summarized["judge_drift"]) == 2 * len(JUDGES)  # below the minimum, and dropped
        assert any("dropped from alpha 1.000" in f for f in summarized["judge_drift"])
    html_notes = json.loads(s3.get_object(Bucket=BUCKET, Key=layout_2.summary)["Body"].read())["notes"]
    assert any(note.startswith(f"judge {JUDGE_A}: agreement with the golden set") for note in html_notes)


# --- alerts: a regression versus the last complete run notifies exactly once ----------------------------------------


def test_a_regression_versus_the_last_complete_run_notifies_exactly_once(mock_conn, s3, warehouse_db, monkeypatch,
                                                                         ) -> None:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    from tailor.config import load_settings
    from tailor.summary import summarize, warehouse_writes
    from tailor_airflow.clients import warehouse

    monkeypatch.setenv("TAILOR__EVALUATION__ALERT_SMTP_CONN_ID", "smtp_default")
    monkeypatch.setenv("TAILOR__EVALUATION__ALERT_EMAIL_TO", "data-platform@example.com")
    cfg = load_settings(env={**__import__("os").environ, "TAILOR__AWS__BUCKET": BUCKET})
    monkeypatch.setattr(evaluation, "settings_and_s3", lambda: (cfg, s3))
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(SmtpNotifier, "notify", lambda self, context: sent.append(
        {"to": self.to, "subject": self.subject, "html": self.html_content}))
    target = warehouse(CONN_ID)
    target.ensure_schema()

    def rows(score: float) -> list[dict[str, Any]]:
        """20 answered questions; a little per-question spread, so the paired test has a variance."""
        return [{"sample_id": f"q-{i:03d}", "approach": "rag", "product_name": "P", "question": f"question {i}",
                 "reference": "r", "answer": f"answer {i}", "error": None, "retrieved": [], "judgements": [],
                 **dict.fromkeys(("judge_score", "bertscore_f1", "key_fact_match"), score - 0.01 * (i % 3))}
                for i in range(20)]

    results = []
    for run_id, day, score in (("week-1", 16, 0.9), ("week-2", 23, 0.5)):  # every score drops by 0.4
        started = datetime(2026, 11, day, 6, tzinfo=UTC)
        context = {"dag_run": SimpleNamespace(run_after=started, start_date=started), "run_id": run_id}
        layout = RunLayout.for_run(BUCKET, "eval/", run_id)
        records = rows(score)
        s3.put_object(Bucket=BUCKET, Key=layout.judged, Body="".join(json.dumps(r) + "\n" for r in records).encode())
        s3.put_object(Bucket=BUCKET, Key=layout.summary, Body=json.dumps(
            {"run_id": run_id, "judge_drift": [], "summaries": [{"approach": "rag"}]}).encode())
        summaries = summarize(records, prices=cfg.prices, usage=cfg.usage, endpoint_instance_type="ml.g4dn.xlarge")
        for run_row, score_rows in warehouse_writes(summaries, records, run_id=run_id, started_at=started,
                                                    versions={}):
            target.write_run(run_row, score_rows)
        summarized = {"prefix": layout.prefix, "statuses": {"rag": "complete"}, "errors": {}, "judge_panel": None}
        for _ in range(2):  # the task and its retry
            results.append(evaluation.alert_on_findings.function(summarized, CONN_ID, **context))

    assert [r["findings"] for r in results] == [0, 0, 3, 3]  # week 2: judge, BERTScore and key facts all dropped
    assert [r["notified"] for r in results] == [[], [], ["smtp"], []]
    assert len(sent) == 1 and sent[0]["to"] == ["data-platform@example.com"]
    assert "rag regressed on judge_score versus run week-1: -0.400" in sent[0]["html"]
    assert f"report: s3://{BUCKET}/eval/week-2/report.html" in sent[0]["html"]
    stored = query(warehouse_db, "SELECT run_id, approach, metric, ROUND(delta, 3) FROM v_eval_regressions "
                                 "ORDER BY metric")
    assert stored == [("week-2", "rag", m, -0.4) for m in ("bertscore_f1", "judge_score", "key_fact_match")]
    mock_conn.converse.assert_not_called()
