"""The local AWS refuses Bedrock model ids as AWS does: per region, profile vs bare id, lifecycle, Converse features.

Through real boto3 clients where the wire shape matters (error code, HTTP status, message), and on the table's
pure functions for the day-dependent lifecycle.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.stack import Stack
from localaws import bedrock_models
from localaws.bedrock_models import ModelRefused, check_converse, foundation_model, resolve

ONE_ATTEMPT = Config(retries={"total_max_attempts": 1})
HI = [{"role": "user", "content": [{"text": "hi"}]}]
TOOLS = {"tools": [{"toolSpec": {"name": "record_scores", "inputSchema": {"json": {
    "type": "object", "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1}}}}}}]}
TODAY = date(2026, 11, 28)


def _refusal(stack: Stack, model_id: str, region: str = "us-east-1", **request: object) -> tuple[str, int, str]:
    runtime = stack.client("bedrock-runtime", region_name=region, config=ONE_ATTEMPT)
    with pytest.raises(ClientError) as refused:
        runtime.converse(modelId=model_id, messages=HI, inferenceConfig={"maxTokens": 4}, **request)
    error = refused.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Message"]


def test_todays_old_requests_are_refused_in_us_east_1_with_awss_errors(local_aws: Stack) -> None:
    # the old generator: Llama 3.1 8B needs the us. profile in us-east-1
    assert _refusal(local_aws, "meta.llama3-1-8b-instruct-v1:0") == (
        "ValidationException", 400, "Invocation of model ID meta.llama3-1-8b-instruct-v1:0 with on-demand "
        "throughput isn\u2019t supported. Retry your request with the ID or ARN of an inference profile that "
        "contains this model.")
    # the old judges: Claude 3.5 Haiku reached end of life (2026-06-19); Mistral Large 2 runs in us-west-2 only
    assert _refusal(local_aws, "us.anthropic.claude-3-5-haiku-20241022-v1:0") == (
        "ResourceNotFoundException", 404, bedrock_models.END_OF_LIFE)
    assert _refusal(local_aws, "mistral.mistral-large-2407-v1:0") == (
        "ValidationException", 400, "The provided model identifier is invalid.")


def test_unknown_ids_embeddings_and_foreign_profiles_are_refused(local_aws: Stack) -> None:
    assert _refusal(local_aws, "acme.made-up-v1:0")[2] == bedrock_models.INVALID_ID
    assert _refusal(local_aws, "eu.amazon.nova-pro-v1:0")[2] == bedrock_models.INVALID_ID  # eu. from us-east-1
    assert _refusal(local_aws, "amazon.titan-embed-text-v2:0")[2] == bedrock_models.NOT_CHAT
    foreign = "arn:aws:bedrock:us-west-2::foundation-model/amazon.nova-pro-v1:0"
    assert _refusal(local_aws, foreign)[2] == bedrock_models.INVALID_ID


def test_tool_use_and_tool_choice_the_model_lacks_are_refused(local_aws: Stack) -> None:
    forced = {**TOOLS, "toolChoice": {"any": {}}}
    assert _refusal(local_aws, "us.meta.llama3-1-8b-instruct-v1:0", toolConfig=forced) == (
        "ValidationException", 400, "This model doesn't support the toolConfig.toolChoice.any field. Remove "
        "toolConfig.toolChoice.any and try again.")
    assert _refusal(local_aws, "us.deepseek.r1-v1:0", toolConfig=TOOLS)[2] == bedrock_models.NO_TOOLS
    named = {**TOOLS, "toolChoice": {"tool": {"name": "record_scores"}}}
    assert "toolChoice.tool" in _refusal(local_aws, "mistral.mistral-large-2402-v1:0", toolConfig=named)[2]


def test_the_new_ids_are_accepted(local_aws: Stack) -> None:
    runtime = local_aws.client("bedrock-runtime", region_name="us-east-1")
    requests: list[tuple[str, dict[str, Any]]] = [
        ("us.meta.llama3-1-8b-instruct-v1:0", {}),
        ("amazon.nova-pro-v1:0", {"toolConfig": {**TOOLS, "toolChoice": {"tool": {"name": "record_scores"}}}}),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", {"toolConfig": TOOLS}),
        ("us.deepseek.r1-v1:0", {}),
    ]
    for model_id, extra in requests:
        reply = runtime.converse(modelId=model_id, messages=HI, inferenceConfig={"maxTokens": 4}, **extra)
        assert reply["stopReason"] in ("max_tokens", "end_turn", "tool_use"), model_id
    # us-west-2 serves the bare Llama 3.1 id on demand
    west = local_aws.client("bedrock-runtime", region_name="us-west-2")
    assert west.converse(modelId="meta.llama3-1-8b-instruct-v1:0", messages=HI,
                         inferenceConfig={"maxTokens": 2})["usage"]["outputTokens"] >= 1


def test_get_foundation_model_reports_lifecycle_and_inference_types(local_aws: Stack) -> None:
    bedrock = local_aws.client("bedrock", region_name="us-east-1", config=ONE_ATTEMPT)
    nova = bedrock.get_foundation_model(modelIdentifier="amazon.nova-pro-v1:0")["modelDetails"]
    assert nova["modelLifecycle"] == {"status": "ACTIVE"} and nova["inferenceTypesSupported"] == ["ON_DEMAND"]
    llama = bedrock.get_foundation_model(modelIdentifier="meta.llama3-1-8b-instruct-v1:0")["modelDetails"]
    assert llama["inferenceTypesSupported"] == ["INFERENCE_PROFILE"]
    with pytest.raises(ClientError) as gone:
        bedrock.get_foundation_model(modelIdentifier="anthropic.claude-3-5-haiku-20241022-v1:0")
    assert gone.value.response["Error"]["Code"] == "ValidationException"
    listed = {m["modelId"] for m in bedrock.list_foundation_models()["modelSummaries"]}
    assert "amazon.nova-pro-v1:0" in listed and "anthropic.claude-3-5-haiku-20241022-v1:0" not in listed
    assert "mistral.mistral-large-2407-v1:0" not in listed  # not offered in us-east-1


def test_lifecycle_follows_the_calendar() -> None:
    sonnet = "us.anthropic.claude-sonnet-4-20250514-v1:0"
    assert resolve(sonnet, "us-east-1", date(2026, 4, 13)).model_id == "anthropic.claude-sonnet-4-20250514-v1:0"
    legacy = foundation_model("anthropic.claude-sonnet-4-20250514-v1:0", "us-east-1", date(2026, 5, 1))
    assert legacy["modelLifecycle"] == {"status": "LEGACY", "legacyTime": "2026-04-14T00:00:00Z",
                                        "endOfLifeTime": "2026-10-14T00:00:00Z"}
    with pytest.raises(ModelRefused) as eol:
        resolve(sonnet, "us-east-1", date(2026, 10, 14))
    assert (eol.value.code, eol.value.status) == ("ResourceNotFoundException", 404)


def test_check_converse_accepts_what_each_family_supports() -> None:
    nova = resolve("amazon.nova-pro-v1:0", "us-east-1", TODAY)
    choices: list[dict[str, Any]] = [{"tool": {"name": "x"}}, {"any": {}}, {"auto": {}}]
    for choice in choices:
        check_converse(nova, {**TOOLS, "toolChoice": choice})
    llama = resolve("us.meta.llama3-1-8b-instruct-v1:0", "us-east-1", TODAY)
    check_converse(llama, {**TOOLS, "toolChoice": {"auto": {}}})
    check_converse(llama, TOOLS)  # no toolChoice: AWS's default is auto
    with pytest.raises(ModelRefused, match="toolChoice.tool"):
        check_converse(llama, {**TOOLS, "toolChoice": {"tool": {"name": "x"}}})
