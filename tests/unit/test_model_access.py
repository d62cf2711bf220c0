"""Bedrock model access before a weekly run: lifecycle, region and profile checks, judge tool choice, judge quorum.

The Bedrock answers come from the local AWS's model table (the same facts its Converse enforces), through a client
shaped like boto3's, so the decision is tested against the contract the local AWS holds us to.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError

from localaws import bedrock_models
from tailor.config import load_settings
from tailor.model_access import (
    Availability,
    ConfiguredModel,
    access_findings,
    judges_answered,
    profile_prefix,
    required_judges,
    split_model_id,
    tool_choice,
)
from tailor_airflow import evaluation
from tailor_airflow.defaults import DEFAULT_JUDGE_MODELS, JUDGE_MODELS

TODAY = date(2026, 11, 28)


class TableBedrock:
    """``get_foundation_model`` answered from the local AWS's table for one region and day."""

    def __init__(self, region: str = "us-east-1", today: date = TODAY, fail_with: str | None = None) -> None:
        self.meta = type("Meta", (), {"region_name": region})()
        self.today, self.fail_with = today, fail_with
        self.asked: list[str] = []

    def get_foundation_model(self, modelIdentifier: str) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        self.asked.append(modelIdentifier)
        if self.fail_with:
            raise ClientError({"Error": {"Code": self.fail_with, "Message": "no"}}, "GetFoundationModel")
        try:
            return {"modelDetails": bedrock_models.foundation_model(modelIdentifier, self.meta.region_name,
                                                                    self.today)}
        except bedrock_models.ModelRefused as refused:
            raise ClientError({"Error": {"Code": refused.code, "Message": refused.message}},
                              "GetFoundationModel") from None


def _check(judges: list[str], generator: str = "us.meta.llama3-1-8b-instruct-v1:0", approaches: tuple = ("rag",),
           client: TableBedrock | None = None) -> list[str]:
    cfg = load_settings(env={"TAILOR__EVALUATION__GENERATOR_MODEL_ID": generator})
    return evaluation.check_model_access(cfg, judges, list(approaches), client=client or TableBedrock())


@pytest.mark.parametrize(("model_id", "expected"), [
    ("amazon.nova-pro-v1:0", (None, "amazon.nova-pro-v1:0")),
    ("us.meta.llama3-1-8b-instruct-v1:0", ("us", "meta.llama3-1-8b-instruct-v1:0")),
    ("global.anthropic.claude-haiku-4-5-20251001-v1:0", ("global", "anthropic.claude-haiku-4-5-20251001-v1:0")),
    ("arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.deepseek.r1-v1:0", ("us", "deepseek.r1-v1:0")),
    ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0", (None, "amazon.nova-pro-v1:0")),
    ("arn:aws:bedrock:us-east-1:111122223333:provisioned-model/abc123", (None, None)),
])
def test_split_model_id(model_id: str, expected: tuple) -> None:
    assert split_model_id(model_id) == expected


def test_tool_choice_by_provider_and_profile_prefix_by_region() -> None:
    assert [tool_choice(m) for m in DEFAULT_JUDGE_MODELS] == ["tool", "tool", "none"]
    assert tool_choice("mistral.mistral-large-2402-v1:0") == "any"
    assert tool_choice("us.meta.llama3-3-70b-instruct-v1:0") == "auto"
    assert [profile_prefix(r) for r in ("us-east-1", "eu-central-1", "ap-southeast-2", "sa-east-1")] == [
        "us", "eu", "apac", "global"]


@pytest.mark.parametrize("judges", [DEFAULT_JUDGE_MODELS, JUDGE_MODELS], ids=["package", "local-stack"])
def test_the_default_models_pass_in_the_runbooks_region(judges: tuple[str, ...]) -> None:
    client = TableBedrock()
    assert _check(list(judges), client=client) == []
    assert client.asked == ["meta.llama3-1-8b-instruct-v1:0", *[split_model_id(m)[1] for m in judges]]


def test_the_default_panel_is_three_families_other_than_the_generators() -> None:
    bases = [split_model_id(m)[1] for m in DEFAULT_JUDGE_MODELS]
    assert None not in bases, bases  # foundation models (or profiles of them), not ARNs of custom models
    families = {base.split(".")[0] for base in bases if base}
    assert len(families) == 3 and "meta" not in families


def test_the_default_judges_each_answer_the_local_aws_in_us_east_1() -> None:
    """The local AWS accepts each default judge with the tool choice the judge call sends (refusals raise)."""
    from tailor.metrics.judge import DEFAULT_CRITERIA, tool_config

    for judge in {*DEFAULT_JUDGE_MODELS, *JUDGE_MODELS}:
        model = bedrock_models.resolve(judge, "us-east-1", TODAY)
        choice = tool_choice(judge)
        bedrock_models.check_converse(model, None if choice == "none" else tool_config(DEFAULT_CRITERIA, choice))


def test_the_old_defaults_fail_before_any_model_call_naming_the_model_and_the_setting() -> None:
    old_judges = ["anthropic.claude-3-5-haiku-20241022-v1:0", "mistral.mistral-large-2407-v1:0", "amazon.nova-pro-v1:0"]
    with pytest.raises(AirflowFailException) as failed:
        _check(old_judges, generator="meta.llama3-1-8b-instruct-v1:0")
    text = str(failed.value)
    assert text.startswith("model check failed, no model was called")
    assert "generator model 'meta.llama3-1-8b-instruct-v1:0' is served in us-east-1 only through a cross-region " \
           "inference profile: set TAILOR__EVALUATION__GENERATOR_MODEL_ID" in text
    assert "'us.meta.llama3-1-8b-instruct-v1:0'" in text  # the fix, spelled out
    assert "judge model 'anthropic.claude-3-5-haiku-20241022-v1:0' cannot be called in us-east-1" in text  # EOL
    assert "judge model 'mistral.mistral-large-2407-v1:0' cannot be called in us-east-1" in text  # us-west-2 only
    assert "amazon.nova-pro-v1:0" not in text and "judge_models Param" in text


def test_the_generator_is_not_checked_when_rag_is_not_evaluated() -> None:
    client = TableBedrock()
    assert _check(["amazon.nova-pro-v1:0"], generator="meta.llama3-1-8b-instruct-v1:0", approaches=("finetune",),
                  client=client) == []
    assert client.asked == ["amazon.nova-pro-v1:0"]


def test_a_legacy_model_is_a_warning_with_its_end_of_life_date() -> None:
    june = TableBedrock("us-east-1", date(2026, 6, 1))  # Claude Sonnet 4: Legacy since 2026-04-14, EOL 2026-10-14
    [warning] = _check(["us.anthropic.claude-sonnet-4-20250514-v1:0"], client=june)
    assert "is Legacy (end of life 2026-10-14)" in warning and "judge_models Param" in warning
    with pytest.raises(AirflowFailException, match="only through a cross-region inference profile"):
        _check(["anthropic.claude-sonnet-4-20250514-v1:0"], client=june)  # profile-only: the bare id fails
    with pytest.raises(AirflowFailException, match="cannot be called in us-east-1"):  # from its EOL day on
        _check(["us.anthropic.claude-sonnet-4-20250514-v1:0"], client=TableBedrock("us-east-1", date(2026, 10, 14)))


def test_access_denied_is_not_an_answer_about_the_model() -> None:
    """A role without bedrock:GetFoundationModel must not read as "model unavailable" (nor pass silently)."""
    with pytest.raises(ClientError, match="AccessDeniedException"):
        _check(["amazon.nova-pro-v1:0"], client=TableBedrock(fail_with="AccessDeniedException"))


def test_provisioned_model_arns_are_not_looked_up() -> None:
    arn = "arn:aws:bedrock:us-east-1:111122223333:provisioned-model/abc123"
    errors, warnings = access_findings([ConfiguredModel(arn, "judge", "x")], {}, "us-east-1")
    assert (errors, warnings) == ([], [])


def test_findings_name_the_bedrock_answer() -> None:
    answers = {"x.y-v1:0": Availability(error_code="ValidationException", error_message="The provided model "
                                        "identifier is invalid.")}
    [error], _ = access_findings([ConfiguredModel("x.y-v1:0", "judge", "THE_SETTING")], answers, "eu-central-1")
    assert "ValidationException: The provided model identifier is invalid." in error and "THE_SETTING" in error


@pytest.mark.parametrize(("errors", "answered"), [
    ({"a": [False, False], "b": [True, True], "c": [False, True]}, ["a", "c"]),  # half counts
    ({"a": [True, True, False], "b": []}, []),  # b was given nothing: it did not answer
])
def test_judges_answered(errors: dict, answered: list) -> None:
    assert judges_answered(errors) == answered


def test_required_judges_is_the_minimum_or_all_that_were_asked() -> None:
    assert [required_judges(2, asked) for asked in (1, 2, 3)] == [1, 2, 2]
    assert required_judges(0, 3) == 1


def test_a_judge_panel_that_shrank_fails_check_complete_and_a_full_one_passes() -> None:
    judges = list(DEFAULT_JUDGE_MODELS)
    shrunk = {"partial": True, "judges": judges, "judges_answered": judges[:1], "judges_required": 2}
    problem = evaluation.judge_panel_problem(shrunk)
    assert problem is not None
    assert problem.startswith("judge panel partial: 1 of 3 judges answered (2 required; silent: ")
    assert judges[1] in problem and judges[2] in problem
    published = {"statuses": {"rag": "complete"}, "errors": {}, "prefix": "eval/run/", "judge_panel": problem}
    with pytest.raises(AirflowFailException, match=r"^partial run: judge panel partial"):
        evaluation.check_complete.function(published)
    full = {**shrunk, "partial": False, "judges_answered": judges}
    assert evaluation.judge_panel_problem(full) is None and evaluation.judge_panel_problem(None) is None
    evaluation.check_complete.function({**published, "judge_panel": None})


def test_a_judge_of_a_generators_family_is_flagged_for_self_preference() -> None:
    from tailor.model_access import provider, self_preference

    assert provider("us.meta.llama3-1-8b-instruct-v1:0") == "meta" and provider("amazon.nova-pro-v1:0") == "amazon"
    assert provider("arn:aws:bedrock:us-east-1:111122223333:provisioned-model/abc") is None
    flagged = self_preference(["us.meta.llama3-3-70b-instruct-v1:0", "amazon.nova-pro-v1:0"],
                              ["us.meta.llama3-1-8b-instruct-v1:0"])
    assert len(flagged) == 1 and flagged[0].startswith("judge us.meta.llama3-3-70b-instruct-v1:0 is from the same "
                                                       "model family (meta)")
    assert self_preference(["amazon.nova-pro-v1:0"], ["meta.jumpstart"]) == []
