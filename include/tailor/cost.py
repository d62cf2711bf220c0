"""Monthly cost model of RAG, fine-tuning and hybrid, from the dated price table of the settings
(``settings().prices`` / ``settings().usage``: the config file's ``pricing`` section, ``TAILOR_CONFIG`` or the
packaged ``config/defaults.yaml``).

Counted: OpenSearch Serverless OCU-hours (the RAG/hybrid vector store), Bedrock generation tokens (RAG),
one SageMaker training job per month and the SageMaker real-time endpoint hours (fine-tuning/hybrid).
Not counted: data transfer, S3 storage, Knowledge Base ingestion embeddings, CloudWatch and Airflow itself.
Prices are us-east-1 on-demand list prices as of the table's ``as_of`` month; they go stale, so re-check them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from tailor.exceptions import ConfigError
from tailor.records import Approach

APPROACHES = tuple(Approach.values())


@dataclass(frozen=True)
class Prices:
    as_of: str
    region: str
    ocu_hour: float
    input_per_1k: float
    output_per_1k: float
    embedding_per_1k: float
    instance_hour: dict[str, float]  # instance type -> USD per hour
    #: Bedrock model id -> (input, output) USD per 1k tokens; "default" prices any other model
    model_per_1k: dict[str, tuple[float, float]] = field(default_factory=dict)

    def model(self, model_id: str) -> tuple[float, float]:
        """(input, output) USD per 1k tokens of a Bedrock model: its row, else the ``default`` row."""
        found = self.model_per_1k.get(model_id) or self.model_per_1k.get("default")
        if found is None:
            raise ConfigError(f"no price for model {model_id!r} and no pricing.models.default row")
        return found

    def hourly(self, instance_type: str) -> float:
        """USD per hour of a SageMaker instance type, or ConfigError naming it and the known ones."""
        if instance_type not in self.instance_hour:
            known = ", ".join(sorted(self.instance_hour))
            raise ConfigError(f"unknown instance type {instance_type!r}: pricing knows {known}")
        return self.instance_hour[instance_type]


@dataclass(frozen=True)
class Usage:
    users: float
    requests_per_user_per_day: float
    input_tokens: float
    output_tokens: float
    ocus: float
    days: float
    training_minutes: float
    instance_type: str
    endpoint_hours_per_day: float = 24.0

    def __post_init__(self) -> None:
        for name in ("users", "requests_per_user_per_day", "input_tokens", "output_tokens", "training_minutes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"usage.{name}={getattr(self, name)!r} must not be negative")
        for name in ("ocus", "days"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"usage.{name}={getattr(self, name)!r} must be positive")
        if not 0 <= self.endpoint_hours_per_day <= 24:
            raise ConfigError(f"usage.endpoint_hours_per_day={self.endpoint_hours_per_day!r} must be within 0..24")


@dataclass(frozen=True)
class MonthlyCost:
    approach: str
    components: dict[str, float]
    total: float


def _number(section: dict[str, Any], key: str, where: str) -> float:
    if section.get(key) is None:
        raise ConfigError(f"setting {where}.{key} is missing from the config file")
    try:
        value = float(section[key])
    except (TypeError, ValueError):
        raise ConfigError(f"setting {where}.{key}={section[key]!r} must be a number") from None
    if value < 0:
        raise ConfigError(f"setting {where}.{key}={value!r} must not be negative")
    return value


def _models(section: dict[str, Any]) -> dict[str, Any]:
    models = section.get("models") or {}
    if not isinstance(models, dict) or not all(isinstance(row, dict) for row in models.values()):
        raise ConfigError("setting pricing.models must map model ids to {input_per_1k, output_per_1k}")
    return models


def parse_prices(raw: dict[str, Any]) -> tuple[Prices, Usage]:
    """Validate a ``pricing`` section (``raw``: a whole config or the section itself), as the settings do."""
    section = raw.get("pricing", raw) or {}
    instances = section.get("instance_hour") or {}
    if not isinstance(instances, dict) or not instances:
        raise ConfigError("setting pricing.instance_hour must map instance types to hourly prices")
    prices = Prices(
        as_of=str(section.get("as_of", "")),
        region=str(section.get("region", "")),
        ocu_hour=_number(section, "opensearch_serverless_ocu_hour", "pricing"),
        input_per_1k=_number(section, "bedrock_input_per_1k", "pricing"),
        output_per_1k=_number(section, "bedrock_output_per_1k", "pricing"),
        embedding_per_1k=_number(section, "embedding_per_1k", "pricing"),
        instance_hour={str(name): _number(instances, name, "pricing.instance_hour") for name in instances},
        model_per_1k={str(name): (_number(row, "input_per_1k", f"pricing.models.{name}"),
                                  _number(row, "output_per_1k", f"pricing.models.{name}"))
                      for name, row in _models(section).items()},
    )
    raw_usage = {"endpoint_hours_per_day": 24, **(section.get("usage") or {})}
    numeric = [f.name for f in fields(Usage) if f.name != "instance_type"]
    usage = Usage(
        **{name: _number(raw_usage, name, "pricing.usage") for name in numeric},
        instance_type=str(raw_usage.get("instance_type", "")),
    )
    prices.hourly(usage.instance_type)  # fail at load time on an unknown instance type
    return prices, usage


def opensearch_monthly(prices: Prices, usage: Usage) -> float:
    """OCUs × OCU-hour price × 24 h × days (Serverless bills every hour, idle or not)."""
    return usage.ocus * prices.ocu_hour * 24 * usage.days


def bedrock_monthly(prices: Prices, usage: Usage) -> float:
    """users × requests/user/day × days × (input/1000 × input price + output/1000 × output price)."""
    per_request = usage.input_tokens / 1000 * prices.input_per_1k + usage.output_tokens / 1000 * prices.output_per_1k
    return usage.users * usage.requests_per_user_per_day * usage.days * per_request


def training_monthly(prices: Prices, usage: Usage) -> float:
    """training minutes / 60 × instance hourly price (one job per month)."""
    return usage.training_minutes / 60 * prices.hourly(usage.instance_type)


def endpoint_monthly(prices: Prices, usage: Usage) -> float:
    """instance hourly price × endpoint hours per day × days."""
    return prices.hourly(usage.instance_type) * usage.endpoint_hours_per_day * usage.days


def monthly_costs(prices: Prices, usage: Usage) -> dict[str, MonthlyCost]:
    """RAG = OpenSearch + Bedrock; fine-tune = training + endpoint; hybrid = fine-tune + OpenSearch."""
    opensearch, bedrock = opensearch_monthly(prices, usage), bedrock_monthly(prices, usage)
    training, endpoint = training_monthly(prices, usage), endpoint_monthly(prices, usage)
    parts = {
        "rag": {"opensearch_serverless": opensearch, "bedrock_generation": bedrock},
        "finetune": {"sagemaker_training": training, "sagemaker_endpoint": endpoint},
        "hybrid": {"sagemaker_training": training, "sagemaker_endpoint": endpoint,
                   "opensearch_serverless": opensearch},
    }
    return {name: MonthlyCost(name, parts[name], sum(parts[name].values())) for name in APPROACHES}


def measured_run_cost(
    prices: Prices,
    *,
    bedrock_input_tokens: int,
    bedrock_output_tokens: int,
    endpoint_seconds: float,
    instance_type: str,
    embedding_tokens: int = 0,
) -> float:
    """Cost of one evaluation run: tokens/1000 × per-1K prices + endpoint seconds/3600 × hourly price."""
    counts = {"bedrock_input_tokens": bedrock_input_tokens, "bedrock_output_tokens": bedrock_output_tokens,
              "endpoint_seconds": endpoint_seconds, "embedding_tokens": embedding_tokens}
    if bad := [f"{name}={value!r}" for name, value in counts.items() if value < 0]:
        raise ConfigError(f"{', '.join(bad)} must not be negative")
    tokens = (bedrock_input_tokens * prices.input_per_1k + bedrock_output_tokens * prices.output_per_1k
              + embedding_tokens * prices.embedding_per_1k) / 1000
    return tokens + endpoint_seconds / 3600 * prices.hourly(instance_type)


# --- the spend guard: what a weekly run will cost at most, before any model call --------------------------------

#: Characters per token of the estimate: ~4 for English text with Llama/Claude-class tokenizers; the estimate
#: divides by 3.5 to err high (code-like or non-English text has fewer characters per token).
CHARS_PER_TOKEN = 3.5
JUDGE_SYSTEM_TOKENS = 450  # the judge's instructions and rubric (tailor.metrics.judge.build_prompt), rounded up


@dataclass(frozen=True)
class RunEstimate:
    generation_usd: float
    judge_usd: float
    judge_calls: int
    lines: tuple[str, ...]

    @property
    def total_usd(self) -> float:
        return self.generation_usd + self.judge_usd


def _tokens(chars: float) -> float:
    return chars / CHARS_PER_TOKEN


def estimate_run_cost(prices: Prices, *, questions: Sequence[tuple[str, str]], approaches: Sequence[str],
                      generator_model: str, judge_models: Sequence[str], max_tokens: int, context_chars: int,
                      judge_context_chars: int, judge_max_tokens: int = 400, golden_answers: int = 0) -> RunEstimate:
    """An upper-leaning estimate of a weekly run's Bedrock spend: every answer is priced at ``max_tokens`` and every
    judge reply at ``judge_max_tokens``; ``questions`` are (question, reference) texts; ``context_chars`` is what
    retrieval adds to a prompt; ``golden_answers`` are judged too (the calibration). The endpoint approaches add no
    marginal token cost (the champion endpoint bills by
    the hour whether the run happens or not; :func:`monthly_costs` models that)."""
    generation = 0.0
    gen_in, gen_out = prices.model(generator_model) if generator_model in prices.model_per_1k else (
        prices.input_per_1k, prices.output_per_1k)
    n = len(questions)
    question_tokens = sum(_tokens(len(q)) for q, _ in questions)
    reference_tokens = sum(_tokens(len(r)) for _, r in questions)
    for approach in approaches:
        if not Approach.parse(approach).uses_endpoint:
            tokens_in = question_tokens + n * (_tokens(context_chars) + 200)  # + the system prompt
            generation += tokens_in / 1000 * gen_in + n * max_tokens / 1000 * gen_out
    answers = n * len(approaches) + golden_answers
    judge_in_per_answer = JUDGE_SYSTEM_TOKENS + _tokens(min(context_chars, judge_context_chars)) + max_tokens
    judge = 0.0
    for model in judge_models:
        price_in, price_out = prices.model(model)
        tokens_in = answers * judge_in_per_answer + len(approaches) * (question_tokens + reference_tokens)
        judge += tokens_in / 1000 * price_in + answers * judge_max_tokens / 1000 * price_out
    golden = f" (incl. {golden_answers} golden)" if golden_answers else ""
    lines = (f"generation: {n} questions x {len(approaches)} approach(es), answers priced at max_tokens "
             f"{max_tokens}: ${generation:.2f}",
             f"judging: {answers} answers{golden} x {len(judge_models)} judge(s) = {answers * len(judge_models)} "
             f"calls: ${judge:.2f}")
    return RunEstimate(generation, judge, answers * len(judge_models), lines)
