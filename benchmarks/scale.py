"""Scale on paper: a 10,000-question weekly evaluation on AWS, projected from our settings, our prompts' token
counts, the figures measured by the other sections and dated assumptions (quotas, prices, latencies).

Nothing here calls AWS. Token counts are measured on our real prompts (the 45 test questions, the sample
catalog's chunks, our judge prompt and tool schema) with the local SmolLM2 tokenizer; Llama 3.1's tokenizer
counts English text within roughly 15 % of it (an assumption). Every other input is listed in the section with
its source and date, so the projection can be redone when a quota or price changes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "out" / "bench"
QUESTIONS = 10_000
APPROACHES = ("rag", "finetune", "hybrid")
#: Output tokens an answer / a judge reply actually uses (the prompt asks for 1-3 sentences; a judge reply is 4
#: numbers and one sentence in a tool call). Assumptions; the quota reservation uses maxTokens instead.
ANSWER_OUTPUT_TOKENS = 100
JUDGE_OUTPUT_TOKENS = 80
JUDGE_MAX_TOKENS = 400  # tailor.metrics.judge.judge_answer's default maxTokens
CHUNK_TOKENS = 300  # Bedrock FIXED_SIZE chunking maxTokens, config default (tokens on AWS; words locally)


@dataclass(frozen=True)
class Quota:
    """Default Bedrock quotas per model (account defaults; new accounts may get less): requests and tokens per
    minute, cross-region inference profile, us-east-1. Source: the Amazon Bedrock quotas table of the AWS General
    Reference as captured 2025-06; check Service Quotas for your account before relying on them."""

    model: str
    rpm: float
    tpm: float
    input_per_1k: float  # USD on-demand (batch inference: 50 %)
    output_per_1k: float
    source: str


#: Llama 3.1 8B prices come from our pricing table (config/defaults.yaml); judges' prices are assumptions.
JUDGE_QUOTAS = {
    "amazon.nova-pro-v1:0": Quota("Nova Pro", 200, 800_000, 0.0008, 0.0032, "quota table 2025-06"),
    "us.anthropic.claude-haiku-4-5-20251001-v1:0": Quota(
        "Claude Haiku 4.5", 200, 800_000, 0.001, 0.005,
        "price: Bedrock pricing page ($1/$5 per M tokens); quota not in that table: assumed equal to Nova Pro's"),
    "us.deepseek.r1-v1:0": Quota(
        "DeepSeek-R1", 200, 800_000, 0.00135, 0.0054,
        "price: Bedrock pricing page ($1.35/$5.40 per M tokens); quota assumed equal to Nova Pro's"),
}
GENERATOR_QUOTA = Quota("Llama 3.1 8B Instruct", 1_600, 600_000, 0.0, 0.0, "quota table 2025-06")
#: Latency of one call on AWS (assumptions, not measured here): a ~100-token answer from Llama 3.1 8B on
#: Bedrock, a judge reply, a Retrieve, an InvokeEndpoint on the JumpStart endpoint.
LATENCY_S = {"generator": 1.5, "judge": 2.0, "retrieve": 0.3, "endpoint": 3.0}
#: Sustained requests/s of one ml.g5.12xlarge JumpStart Llama 3.1 8B endpoint (LMI rolling batch), ~100 output
#: tokens each: an assumption to replace with a load test of the real endpoint.
ENDPOINT_RPS = 4.0
ENDPOINT_SETUP_HOURS = 0.25  # create + InService + delete of an ephemeral endpoint (assumption)
#: roberta-large layers 1-17 vs SmolLM2-135M layers 1-8: weights touched per token (multiply-adds)
ROBERTA_17_PARAMS = 17 * (4 * 1024 * 1024 + 2 * 1024 * 4096)
SMOLLM2_8_PARAMS = 8 * (576 * (576 + 192 + 192 + 576) + 3 * 576 * 1536)


def _load(name: str) -> dict[str, Any] | None:
    try:
        return json.loads((BENCH / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def production_settings() -> Any:
    """The packaged defaults, without any TAILOR__ override of this process (the local sizing)."""
    from tailor.config import load_settings

    return load_settings(env={})


def prompt_tokens(context_chars: int, chunk_tokens: int = CHUNK_TOKENS) -> dict[str, float]:
    """Mean tokens of our real prompts over the 45 test questions (SmolLM2 tokenizer)."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from localaws.knowledge import chunk_text
    from localaws.models import smollm2_dir
    from tailor.catalog import validate_file
    from tailor.metrics.judge import build_prompt, tool_config
    from tailor.prompts import DOMAIN_ADAPTATION, SYSTEM, endpoint_prompt, grounded_question
    from tailor.qa import load_qa

    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    catalog = validate_file(REPO / "include" / "data" / "catalog" / "industrial_catalog.txt")
    items = load_qa("data/qa/test.json").items
    tool = json.dumps(tool_config())
    totals = {"question": 0.0, "rag": 0.0, "finetune": 0.0, "judge_rag": 0.0, "judge_finetune": 0.0}
    for item in items:
        document = catalog.product(item.product_name).to_document()
        # Three full chunks of ~300 tokens (the KB's chunking on AWS) cut from the question's own product
        # document (repeated when it is shorter than three chunks): what top-3 retrieval puts in the prompt.
        words = document.split()
        per_token = len(words) / max(1, count(document))
        chunks = chunk_text(" ".join(words * 3), {"fixedSizeChunkingConfiguration": {
            "maxTokens": int(chunk_tokens * per_token), "overlapPercentage": 20}})[:3]
        context = "\n\n".join(f"[{i + 1}] {c}" for i, c in enumerate(chunks))
        totals["question"] += count(item.question)
        totals["rag"] += count(SYSTEM) + count(grounded_question(item.question, context))
        totals["finetune"] += count(endpoint_prompt(DOMAIN_ADAPTATION, item.question))  # the default method
        answer = item.answer  # a reference-length answer stands in for the generated one
        for kind, ctx in (("judge_rag", context[:context_chars]), ("judge_finetune", None)):
            system, user = build_prompt(item.question, item.answer, answer, ctx)
            totals[kind] += count(system) + count(user) + count(tool)
    return {k: v / len(items) for k, v in totals.items()}


def airflow_limits() -> dict[str, int]:
    from airflow.configuration import conf

    return {"max_map_length": conf.getint("core", "max_map_length"),
            "max_active_tasks_per_dag": conf.getint("core", "max_active_tasks_per_dag"),
            "parallelism": conf.getint("core", "parallelism")}


def batch_operators() -> str:
    from importlib.metadata import version

    from airflow.providers.amazon.aws.operators.bedrock import BedrockBatchInferenceOperator  # noqa: F401
    from airflow.providers.amazon.aws.sensors.bedrock import BedrockBatchInferenceSensor  # noqa: F401

    return version("apache-airflow-providers-amazon")


def quota_minutes(calls: float, tokens_reserved_per_call: float, quota: Quota) -> tuple[float, str]:
    """Minimum minutes for ``calls`` under a model's RPM and TPM quotas (TPM counts input + maxTokens at the
    start of each request), and which quota binds."""
    by_requests = calls / quota.rpm
    by_tokens = calls * tokens_reserved_per_call / quota.tpm
    return (by_requests, "RPM") if by_requests >= by_tokens else (by_tokens, "TPM")


def run(questions: int = QUESTIONS) -> tuple[str, bool]:
    """Return (markdown section, True: a projection has no goal)."""
    from tailor.cost import measured_run_cost

    cfg = production_settings()
    ev = cfg.evaluation
    judges = list(ev.judge_models)
    chunk_tokens = cfg.knowledge_base.chunk_max_tokens
    tokens = prompt_tokens(ev.judge_context_chars, chunk_tokens)
    limits = airflow_limits()
    provider = batch_operators()
    prices = cfg.prices
    judge_fig, local_fig, bake_fig = _load("judge_stage"), _load("local_aws"), _load("bakeoff")
    bert_fig, wh_fig = _load("bertscore"), _load("warehouse")

    answers = questions * len(APPROACHES)
    tasks_at = {b: math.ceil(questions / b) * len(APPROACHES) for b in (ev.batch_size, 30, 50)}
    min_batch = next(b for b in range(1, questions + 1)
                     if math.ceil(questions / b) * len(APPROACHES) <= limits["max_map_length"])
    judge_calls = answers * len(judges)
    rag_in = tokens["rag"]
    judge_in = (2 * tokens["judge_rag"] + tokens["judge_finetune"]) / 3  # rag and hybrid carry context

    # --- time -------------------------------------------------------------------------------------------------
    gen_minutes, gen_bound = quota_minutes(questions, rag_in + ev.max_tokens, GENERATOR_QUOTA)
    in_flight_gen = min(limits["max_active_tasks_per_dag"], tasks_at[50]) * ev.concurrency
    gen_rate_min = in_flight_gen / LATENCY_S["generator"] * 60  # calls/min our settings could push
    judge_rows = []
    slowest = 0.0
    for model in judges:
        q = JUDGE_QUOTAS[model]
        minutes, bound = quota_minutes(answers, judge_in + JUDGE_MAX_TOKENS, q)
        slowest = max(slowest, minutes)
        judge_rows.append((q, minutes, bound))
    judge_pool_minutes = judge_calls * LATENCY_S["judge"] / 8 / 60  # LLMJudgeOperator(concurrency=8), one task
    judge_pool_64 = judge_calls * LATENCY_S["judge"] / 64 / 60
    endpoint_calls = 2 * questions
    endpoint_hours = endpoint_calls / ENDPOINT_RPS / 3600
    bert_local = (bert_fig or {}).get("rates", {}).get("long", {}).get("stage_pairs_per_s")
    bert_prod = bert_local * SMOLLM2_8_PARAMS / ROBERTA_17_PARAMS if bert_local else None
    score_rows = answers * (3 + 1 + len(judges) * 4)  # bertscore, key facts, retrieval/judge score + judge rows

    # --- cost -------------------------------------------------------------------------------------------------
    gen_cost = measured_run_cost(prices, bedrock_input_tokens=int(questions * rag_in),
                                 bedrock_output_tokens=questions * ANSWER_OUTPUT_TOKENS, endpoint_seconds=0,
                                 instance_type=cfg.finetune.endpoint_instance_type)
    endpoint_cost = measured_run_cost(prices, bedrock_input_tokens=0, bedrock_output_tokens=0,
                                      endpoint_seconds=(endpoint_hours + ENDPOINT_SETUP_HOURS) * 3600,
                                      instance_type=cfg.finetune.endpoint_instance_type)
    judge_cost = sum(answers * (judge_in * q.input_per_1k + JUDGE_OUTPUT_TOKENS * q.output_per_1k) / 1000
                     for q, _, _ in judge_rows)
    on_demand = gen_cost + judge_cost + endpoint_cost
    batch = gen_cost / 2 + judge_cost / 2 + endpoint_cost

    overhead = (judge_fig or {}).get("overhead_per_call_s")
    eff64 = next((r["ratio"] for r in (judge_fig or {}).get("rows", []) if r["concurrency"] == 64), None)
    batching = (local_fig or {}).get("converse_tokens_per_s", {})
    retrieve_p95 = (local_fig or {}).get("retrieve_p95_ms", {})
    batch_gain = (batching.get("8 concurrent", 0) / batching["single"]) if batching.get("single") else None
    per_q = (bake_fig or {}).get("per_question_s", {})

    lines = [
        "## Scale on paper: 10,000 questions a week on AWS",
        f"A projection, not a measurement: {questions:,} questions x {len(APPROACHES)} approaches = {answers:,} "
        f"answers, judged by the DAG's default {len(judges)} judges ({judge_calls:,} judge calls), with our "
        f"production settings (`evaluation.batch_size` {ev.batch_size}, `concurrency` {ev.concurrency}, "
        f"`max_tokens` {ev.max_tokens}, judge context cap 6,000 characters, top-k {cfg.knowledge_base.top_k} chunks "
        f"of {chunk_tokens} tokens). Token counts are measured on our own prompts (45 test questions, the sample "
        "catalog's chunks, our judge prompt and tool schema) with the SmolLM2 tokenizer: RAG/hybrid prompt "
        f"**{rag_in:,.0f}** tokens, fine-tune prompt {tokens['finetune']:,.0f}, judge prompt with context "
        f"{tokens['judge_rag']:,.0f} / without {tokens['judge_finetune']:,.0f}; answers assumed "
        f"~{ANSWER_OUTPUT_TOKENS} output tokens, judge replies ~{JUDGE_OUTPUT_TOKENS}.",
        "",
        "### Airflow: mapped tasks",
        f"`plan_batches` maps {questions:,} x {len(APPROACHES)} / {ev.batch_size} = **{tasks_at[ev.batch_size]:,} "
        f"generate_answers tasks** against `core.max_map_length` = {limits['max_map_length']:,} (this Airflow's "
        f"setting, default 1024): the run would fail at `plan_batches`. Either set `TAILOR__EVALUATION__BATCH_SIZE` "
        f">= {min_batch} (e.g. 50: {tasks_at[50]:,} tasks; 30: {tasks_at[30]:,}), which the task reads at run "
        "time, or raise `AIRFLOW__CORE__MAX_MAP_LENGTH`. Larger batches are the better lever: fewer task starts, "
        f"and each task already runs {ev.concurrency} calls at once. With `core.max_active_tasks_per_dag` = "
        f"{limits['max_active_tasks_per_dag']} and `parallelism` = {limits['parallelism']}, at most "
        f"{in_flight_gen} generation calls are in flight.",
        "",
        "### Time: quotas bind, not our code",
        "Default Bedrock quotas (cross-region inference, us-east-1; source: the Amazon Bedrock quotas table of the "
        "AWS General Reference as captured 2025-06; per account and often lower for new accounts; check Service "
        "Quotas). Bedrock reserves input + `maxTokens` against the tokens-per-minute quota when a request starts.",
        "",
        "| calls | count | model | quota RPM / TPM | quota source | tokens reserved per call | floor (min) "
        "| bound by |",
        "|---|---|---|---|---|---|---|---|",
        f"| RAG generation (Converse) | {questions:,} | {GENERATOR_QUOTA.model} | {GENERATOR_QUOTA.rpm:,.0f} / "
        f"{GENERATOR_QUOTA.tpm:,.0f} | {GENERATOR_QUOTA.source} | {rag_in + ev.max_tokens:,.0f} "
        f"| **{gen_minutes:.0f}** | {gen_bound} |",
    ]
    for q, minutes, bound in judge_rows:
        lines.append(f"| judge (Converse + toolConfig) | {answers:,} | {q.model} | {q.rpm:,.0f} / {q.tpm:,.0f} "
                     f"| {q.source} | {judge_in + JUDGE_MAX_TOKENS:,.0f} | **{minutes:.0f}** | {bound} |")
    lines += [
        "",
        f"- Generation: our settings could push ~{gen_rate_min:,.0f} calls/min ({in_flight_gen} in flight at an "
        f"assumed {LATENCY_S['generator']} s per call), above the {GENERATOR_QUOTA.rpm:,.0f} RPM quota: the floor "
        f"above ({gen_minutes:.0f} min) holds, adaptive retries absorb the throttling. Retrieve: "
        f"{2 * questions:,} calls in the same tasks (no per-call quota used here"
        + (f"; the local index answered at p95 {retrieve_p95['50000']:.0f} ms with 50,000 chunks, which says "
           "nothing about OpenSearch Serverless" if "50000" in retrieve_p95 else "")
        + ").",
        f"- Judges: all three are called from **one** task (`LLMJudgeOperator`, concurrency 8): at an assumed "
        f"{LATENCY_S['judge']} s per call that is {judge_pool_minutes / 60:.1f} h for {judge_calls:,} calls, far "
        f"above the quota floor of the slowest judge ({slowest / 60:.1f} h). Raising the operator's `concurrency` to "
        f"64 brings the pool to {judge_pool_64:.0f} min, and the quota floor ({slowest / 60:.1f} h) binds"
        + (f"; measured: our pool keeps **{eff64:.2f}** of the ideal throughput at 64 in flight and costs "
           f"{overhead * 1000:.1f} ms of our own time per call (judge-stage section), i.e. "
           f"{judge_calls * overhead / 60:.1f} min of CPU for all {judge_calls:,} calls"
           if overhead is not None and eff64 is not None else " (judge-stage figures not measured in this run)")
        + ". The binding limit is then the judges with the lowest request quota (Nova Pro at 200 RPM, the other two "
        "assumed alike); throttled calls of one judge hold pool slots the others could use, so a per-judge pool "
        "(or a quota increase, or fewer judges) is the next step if that matters. DeepSeek-R1 reasons before it "
        "answers: its output tokens per judgement are likely several times the others' (not measured here).",
        f"- Fine-tuned endpoint: {endpoint_calls:,} InvokeEndpoint calls (finetune + hybrid) at an assumed "
        f"{ENDPOINT_RPS:g} requests/s for one ml.g5.12xlarge = {endpoint_hours:.1f} endpoint-hours, plus "
        f"~{ENDPOINT_SETUP_HOURS:g} h to create and delete it"
        + (f". Locally, batching 8 concurrent requests gave {batch_gain:.1f}x the tokens/s of one at a time "
           "(local AWS section): the same lever (LMI rolling batch) sets the real endpoint's throughput"
           if batch_gain else "")
        + ".",
        "- Scoring: `score_answers` is one task. BERTScore with roberta-large (layers 1-17, ~"
        f"{ROBERTA_17_PARAMS / 1e6:.0f}M weights per token) vs the local SmolLM2 layers 1-8 (~"
        f"{SMOLLM2_8_PARAMS / 1e6:.0f}M): ~{ROBERTA_17_PARAMS / SMOLLM2_8_PARAMS:.1f}x the compute per token"
        + (f"; from the measured local rate ({bert_local:.1f} 3-sentence pairs/s on this machine) that is "
           f"~{bert_prod:.1f} pairs/s on a 2-core worker, i.e. **{answers / bert_prod / 3600:.1f} h** for "
           f"{answers:,} answers. Next step before 10k questions: map `score_answers` over the generation batches "
           "(or run it on a GPU worker)" if bert_prod else " (BERTScore section not measured in this run)")
        + ".",
        f"- Warehouse: ~{score_rows:,} `eval_score` rows"
        + (f", ~{score_rows / wh_fig['postgres_rows_per_s']:.0f} s at the measured PostgreSQL rate"
           if wh_fig and wh_fig.get("postgres_rows_per_s") else "")
        + ": negligible.",
    ]
    if per_q:
        local = sum(v for k, v in per_q.items() if k != "total") * questions
        lines.append(f"- For scale: the local stack on 2 cores would need ~{local / 86400:.0f} days for this run "
                     "(per-question costs of the bake-off section): the local AWS tests the pipeline, not the load.")
    lines += [
        "",
        "### Cost of one 10,000-question run",
        f"Prices: Llama 3.1 8B and the endpoint from our dated table (`pricing.as_of` {prices.as_of}, "
        f"`include/tailor/cost.py` `measured_run_cost`); judges' prices are assumptions (list prices 2025: Claude "
        "3.5 Haiku $0.0008/$0.004, Mistral Large 24.07 $0.002/$0.006, Nova Pro $0.0008/$0.0032 per 1K input/output "
        "tokens). Bedrock batch inference: ~50 % of on-demand.",
        "",
        "| item | on-demand USD | with Bedrock batch inference USD |",
        "|---|---|---|",
        f"| RAG generation ({questions:,} calls, Llama 3.1 8B) | {gen_cost:,.2f} | {gen_cost / 2:,.2f} |",
        f"| judges ({judge_calls:,} calls) | {judge_cost:,.2f} | {judge_cost / 2:,.2f} |",
        f"| endpoint ({endpoint_hours + ENDPOINT_SETUP_HOURS:.1f} h of {cfg.finetune.endpoint_instance_type}) "
        f"| {endpoint_cost:,.2f} | {endpoint_cost:,.2f} |",
        f"| **total** | **{on_demand:,.2f}** | **{batch:,.2f}** |",
        "",
        f"Batch inference: `BedrockBatchInferenceOperator` and `BedrockBatchInferenceSensor` are in "
        f"apache-airflow-providers-amazon {provider} (checked by importing them). A job needs at least 100 records "
        f"(default quota \"Minimum number of records per batch inference job\", per model) - {questions:,} "
        "questions are far above it - and finishes within a 24 h window, not minutes: it fits a weekly run "
        "that can wait, and halves the Bedrock part. Two things to check before moving to it: whether the judge's "
        "`toolConfig` (forced tool use for structured scores) is accepted in batch records for each judge model, "
        "and per-record latency would no longer be measured (the report's latency columns). The endpoint is "
        "unaffected (SageMaker batch transform would be the analogue). For comparison, the champion endpoint "
        f"alone, if kept up 24x7, costs {prices.hourly(cfg.finetune.endpoint_instance_type) * 24 * 30:,.0f} USD a "
        "month: how many hours it stays up matters more than batch pricing.",
    ]
    return "\n".join(lines), True


if __name__ == "__main__":
    start = time.time()
    print(run()[0])
    print(f"({time.time() - start:.1f} s)")
