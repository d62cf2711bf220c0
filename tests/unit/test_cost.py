"""Unit tests of tailor.cost: the seed's monthly figures, each formula, the price table (part of the settings,
`TAILOR_CONFIG` included) and the errors."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from tailor.config import DEFAULT_CONFIG, load_settings
from tailor.cost import MonthlyCost, Prices, Usage, measured_run_cost, monthly_costs, parse_prices
from tailor.exceptions import ConfigError

SEED_FIGURES = {"rag": 548.0, "finetune": 5107.0, "hybrid": 5457.0}


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def table() -> tuple[Prices, Usage]:
    cfg = load_settings(env={})
    return cfg.prices, cfg.usage


def test_price_table_is_dated_and_matches_the_brief(table: tuple[Prices, Usage]) -> None:
    prices, usage = table
    assert prices.as_of == "2026-11"
    assert prices.region == "us-east-1"
    assert prices.ocu_hour == 0.24
    assert prices.input_per_1k == prices.output_per_1k == 0.00022
    assert prices.embedding_per_1k == 0.00002
    assert prices.instance_hour == {"ml.g5.12xlarge": 7.09, "ml.g4dn.xlarge": 0.736}
    assert usage == Usage(users=1000, requests_per_user_per_day=10, input_tokens=2000, output_tokens=1000, ocus=2,
                          days=30, training_minutes=15, instance_type="ml.g5.12xlarge", endpoint_hours_per_day=24)


def test_every_price_has_a_source_comment() -> None:
    lines = DEFAULT_CONFIG.read_text(encoding="utf-8").split("\npricing:", 1)[1].splitlines()
    priced = [line for line in lines if line.strip().startswith(("opensearch", "bedrock", "embedding", "ml."))]
    assert len(priced) == 6
    assert all("# source: " in line for line in priced)


def test_explicit_dict_whole_config_or_section(raw: dict, table: tuple[Prices, Usage]) -> None:
    assert parse_prices(raw) == table
    assert parse_prices(raw["pricing"]) == table


def cheaper_config(tmp_path: Path, raw: dict) -> str:
    """A whole config file whose price table differs from the packaged one (half the OCU-hour, another GPU)."""
    changed = copy.deepcopy(raw)
    changed["pricing"].update(as_of="2027-01", opensearch_serverless_ocu_hour=0.12)
    changed["pricing"]["instance_hour"]["ml.g5.12xlarge"] = 5.67
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(changed), encoding="utf-8")
    return str(path)


def test_tailor_config_with_other_prices_changes_the_cost_model(tmp_path: Path, raw: dict,
                                                                  table: tuple[Prices, Usage]) -> None:
    cfg = load_settings(env={"TAILOR_CONFIG": cheaper_config(tmp_path, raw)})
    assert (cfg.prices.as_of, cfg.prices.ocu_hour, cfg.prices.hourly("ml.g5.12xlarge")) == ("2027-01", 0.12, 5.67)
    assert cfg.usage == table[1]
    before, after = monthly_costs(*table), monthly_costs(cfg.prices, cfg.usage)
    assert after["rag"].components["opensearch_serverless"] == pytest.approx(
        before["rag"].components["opensearch_serverless"] / 2)
    assert after["finetune"].total == pytest.approx(15 / 60 * 5.67 + 5.67 * 24 * 30)
    assert after["hybrid"].total < before["hybrid"].total


def test_seed_figures_within_two_percent_and_exact_formula(table: tuple[Prices, Usage]) -> None:
    costs = monthly_costs(*table)
    assert set(costs) == {"rag", "finetune", "hybrid"}
    exact = {
        "rag": 2 * 0.24 * 24 * 30 + 1000 * 10 * 30 * (2000 / 1000 * 0.00022 + 1000 / 1000 * 0.00022),
        "finetune": 15 / 60 * 7.09 + 7.09 * 24 * 30,
        "hybrid": 15 / 60 * 7.09 + 7.09 * 24 * 30 + 2 * 0.24 * 24 * 30,
    }
    for name, seed in SEED_FIGURES.items():
        assert isinstance(costs[name], MonthlyCost) and costs[name].approach == name
        assert costs[name].total == pytest.approx(exact[name], abs=1e-9)
        assert costs[name].total == pytest.approx(sum(costs[name].components.values()))
        assert abs(costs[name].total - seed) / seed < 0.02
    assert costs["rag"].total == pytest.approx(543.60)
    assert costs["finetune"].total == pytest.approx(5106.5725)
    assert costs["hybrid"].total == pytest.approx(5452.1725)


def test_each_component_formula(table: tuple[Prices, Usage]) -> None:
    costs = monthly_costs(*table)
    assert costs["rag"].components == pytest.approx({"opensearch_serverless": 345.60, "bedrock_generation": 198.00})
    assert costs["finetune"].components == pytest.approx({"sagemaker_training": 1.7725, "sagemaker_endpoint": 5104.80})
    assert costs["hybrid"].components == pytest.approx(
        {"sagemaker_training": 1.7725, "sagemaker_endpoint": 5104.80, "opensearch_serverless": 345.60}
    )
    assert "bedrock_generation" not in costs["hybrid"].components


def test_components_scale_with_their_inputs(table: tuple[Prices, Usage]) -> None:
    prices, usage = table
    base = monthly_costs(prices, usage)
    doubled_users = monthly_costs(prices, replace(usage, users=2000))["rag"].components
    assert doubled_users["bedrock_generation"] == pytest.approx(2 * base["rag"].components["bedrock_generation"])
    assert doubled_users["opensearch_serverless"] == pytest.approx(base["rag"].components["opensearch_serverless"])
    small = monthly_costs(prices, replace(usage, instance_type="ml.g4dn.xlarge"))["finetune"].components
    assert small == pytest.approx({"sagemaker_training": 15 / 60 * 0.736, "sagemaker_endpoint": 0.736 * 24 * 30})


def test_business_hours_endpoint_costs_a_third(table: tuple[Prices, Usage]) -> None:
    prices, usage = table
    always_on = monthly_costs(prices, usage)
    business = monthly_costs(prices, replace(usage, endpoint_hours_per_day=8))
    for name in ("finetune", "hybrid"):
        before = always_on[name].components["sagemaker_endpoint"]
        after = business[name].components["sagemaker_endpoint"]
        assert after == pytest.approx(before / 3)
        assert before - after == pytest.approx(before * 2 / 3)
    assert business["rag"] == always_on["rag"]


def test_endpoint_hours_default_to_24(raw: dict) -> None:
    section = copy.deepcopy(raw["pricing"])
    del section["usage"]["endpoint_hours_per_day"]
    assert parse_prices(section)[1].endpoint_hours_per_day == 24


def test_measured_run_cost(table: tuple[Prices, Usage]) -> None:
    prices, _ = table
    cost = measured_run_cost(prices, bedrock_input_tokens=1_000_000, bedrock_output_tokens=500_000,
                             endpoint_seconds=3600, instance_type="ml.g4dn.xlarge")
    assert cost == pytest.approx(0.22 + 0.11 + 0.736)
    with_embeddings = measured_run_cost(prices, bedrock_input_tokens=0, bedrock_output_tokens=0, endpoint_seconds=90,
                                        instance_type="ml.g5.12xlarge", embedding_tokens=2_000_000)
    assert with_embeddings == pytest.approx(90 / 3600 * 7.09 + 2000 * 0.00002)


def test_unknown_instance_type_names_it_and_the_known_ones(raw: dict, table: tuple[Prices, Usage]) -> None:
    prices, usage = table
    with pytest.raises(ConfigError, match=r"'ml\.p4d\.24xlarge'.*ml\.g4dn\.xlarge, ml\.g5\.12xlarge"):
        measured_run_cost(prices, bedrock_input_tokens=0, bedrock_output_tokens=0, endpoint_seconds=1,
                          instance_type="ml.p4d.24xlarge")
    with pytest.raises(ConfigError, match="ml.p4d.24xlarge"):
        monthly_costs(prices, replace(usage, instance_type="ml.p4d.24xlarge"))
    section = copy.deepcopy(raw["pricing"])
    section["usage"]["instance_type"] = "ml.p4d.24xlarge"
    with pytest.raises(ConfigError, match="ml.p4d.24xlarge"):
        parse_prices(section)


@pytest.mark.parametrize(
    ("field", "value"),
    [("users", -1), ("requests_per_user_per_day", -5), ("input_tokens", -1), ("output_tokens", -1),
     ("training_minutes", -15), ("ocus", 0), ("ocus", -2), ("days", 0), ("endpoint_hours_per_day", -1),
     ("endpoint_hours_per_day", 25)],
)
def test_invalid_usage_names_the_field(table: tuple[Prices, Usage], raw: dict, field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        changes: dict[str, Any] = {field: value}
        replace(table[1], **changes)
    section = copy.deepcopy(raw["pricing"])
    section["usage"][field] = value
    with pytest.raises(ConfigError, match=field):
        parse_prices(section)


def test_zero_is_valid_where_it_means_nothing_used(table: tuple[Prices, Usage]) -> None:
    prices, usage = table
    idle = replace(usage, users=0, training_minutes=0, endpoint_hours_per_day=0)
    costs = monthly_costs(prices, idle)
    assert costs["rag"].total == pytest.approx(345.60)
    assert costs["finetune"].total == 0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.pop("opensearch_serverless_ocu_hour"), "opensearch_serverless_ocu_hour is missing"),
        (lambda s: s.update(bedrock_input_per_1k="cheap"), "bedrock_input_per_1k='cheap' must be a number"),
        (lambda s: s.update(embedding_per_1k=-0.1), "embedding_per_1k=-0.1 must not be negative"),
        (lambda s: s["usage"].pop("days"), "usage.days is missing"),
        (lambda s: s.update(instance_hour={}), "instance_hour"),
        (lambda s: s["instance_hour"].update({"ml.g5.12xlarge": None}), r"instance_hour\.ml\.g5\.12xlarge"),
    ],
)
def test_bad_price_table_names_the_setting(raw: dict, mutate, message: str) -> None:
    section = copy.deepcopy(raw["pricing"])
    mutate(section)
    with pytest.raises(ConfigError, match=message):
        parse_prices(section)


def test_negative_measured_inputs_are_rejected(table: tuple[Prices, Usage]) -> None:
    with pytest.raises(ConfigError, match="endpoint_seconds"):
        measured_run_cost(table[0], bedrock_input_tokens=0, bedrock_output_tokens=0, endpoint_seconds=-1,
                          instance_type="ml.g4dn.xlarge")


# --- the spend guard's estimate --------------------------------------------------------------------------------


def test_the_run_estimate_prices_generation_and_every_judge_call() -> None:
    from tailor.cost import CHARS_PER_TOKEN, JUDGE_SYSTEM_TOKENS, estimate_run_cost

    prices = load_settings(env={}).prices
    questions = [("q" * 70, "r" * 140)] * 10  # 20 + 40 tokens each at 3.5 chars a token
    estimate = estimate_run_cost(prices, questions=questions, approaches=["rag", "finetune"],
                                 generator_model="us.meta.llama3-1-8b-instruct-v1:0",
                                 judge_models=["amazon.nova-pro-v1:0", "some.unknown-judge"], max_tokens=100,
                                 context_chars=700, judge_context_chars=350)
    assert CHARS_PER_TOKEN == 3.5
    gen_in = 10 * (20 + 700 / 3.5 + 200)  # rag only: the endpoint bills by the hour anyway
    assert estimate.generation_usd == pytest.approx(gen_in / 1000 * 0.00022 + 10 * 100 / 1000 * 0.00022)
    per_answer_in = JUDGE_SYSTEM_TOKENS + 350 / 3.5 + 100
    judge_in = 20 * per_answer_in + 2 * 10 * (20 + 40)
    nova = judge_in / 1000 * 0.0008 + 20 * 400 / 1000 * 0.0032
    unknown = judge_in / 1000 * 0.003 + 20 * 400 / 1000 * 0.015  # priced by the "default" row, on purpose high
    assert estimate.judge_usd == pytest.approx(nova + unknown)
    assert estimate.judge_calls == 40 and estimate.total_usd == estimate.generation_usd + estimate.judge_usd
    assert estimate.lines[1].startswith("judging: 20 answers x 2 judge(s) = 40 calls: $")


def test_a_model_without_a_price_row_and_no_default_is_a_config_error(raw: dict) -> None:
    from tailor.cost import parse_prices

    pricing = {**raw["pricing"], "models": {"amazon.nova-pro-v1:0": {"input_per_1k": 1, "output_per_1k": 2}}}
    prices, _ = parse_prices(pricing)
    assert prices.model("amazon.nova-pro-v1:0") == (1.0, 2.0)
    with pytest.raises(ConfigError, match="no price for model 'x' and no pricing.models.default row"):
        prices.model("x")
    with pytest.raises(ConfigError, match="pricing.models must map model ids"):
        parse_prices({**raw["pricing"], "models": {"m": 0.1}})
