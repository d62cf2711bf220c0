"""Can the configured Bedrock models be called today, in this region, the way we call them?

Decided before any generation, from Bedrock's own answers (``GetFoundationModel``'s ``modelLifecycle`` and
``inferenceTypesSupported``), so a weekly run fails in seconds naming the model and the setting to change, instead
of failing every answer (or silently shrinking the judge panel) after the other calls were paid.

Facts (re-check at the source before relying on them for something new):

* Lifecycle: "When you make a GetFoundationModel or ListFoundationModels call, you can find the state of the model
  in the modelLifecycle field" (``ACTIVE`` | ``LEGACY``); "EOL: This version is no longer available for use. Any
  requests made to this version will fail"; "After the EOL date, the model version can only be found on this
  documentation page" (docs.aws.amazon.com/bedrock/latest/userguide/model-lifecycle.html).
* Access: a model offered in a region only through a cross-region inference profile must be invoked with the
  profile id (``us.<model id>``); AWS answers a bare id with "Invocation of model ID ... with on-demand throughput
  isn't supported" (bedrock-runtime ``ConverseRequest.modelId`` in botocore; models-regions.html). Such models
  report ``INFERENCE_PROFILE``, not ``ON_DEMAND``, in ``inferenceTypesSupported``.
* Forced tool choice: botocore's bedrock-runtime ``ToolChoice``: "tool: ... Only supported by Anthropic Claude 3
  and Amazon Nova models" (Nova: ``tool``/``any``/``auto``, docs.aws.amazon.com/nova/latest/userguide/
  tool-choice.html); Mistral Large accepts ``any``; Meta Llama accepts ``auto`` only ("This model doesn't support
  the toolConfig.toolChoice.any field"); DeepSeek-R1 has no tool use through Converse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

#: Geographic prefixes of cross-region (system-defined) inference profiles.
PROFILE_PREFIXES = ("us", "eu", "apac", "global", "us-gov", "jp", "au", "ca")
_ARN = re.compile(r"^arn:aws[a-z-]*:bedrock:[a-z0-9-]*:[0-9]*:(?P<kind>[a-z-]+)/(?P<id>.+)$")

ToolChoice = Literal["tool", "any", "auto", "none"]
#: Provider id prefix -> the strongest tool choice its Converse accepts (see the module docstring).
_TOOL_CHOICE: dict[str, ToolChoice] = {"anthropic": "tool", "amazon": "tool", "mistral": "any", "meta": "auto",
                                       "cohere": "auto", "deepseek": "none"}


def split_model_id(model_id: str) -> tuple[str | None, str | None]:
    """(inference-profile prefix or None, foundation model id) behind a bare id, a profile id or an ARN.

    The model id is None for ARNs of provisioned, imported or custom models (their lifecycle is their own).
    """
    target = model_id
    if match := _ARN.match(model_id):
        if match["kind"] not in ("foundation-model", "inference-profile"):
            return None, None
        target = match["id"]
    head, dot, rest = target.partition(".")
    if dot and head in PROFILE_PREFIXES and "." in rest:
        return head, rest
    return None, target


def provider(model_id: str) -> str | None:
    """The model's provider (``meta``, ``anthropic``, ``amazon``...) from a bare id, a profile id or an ARN; None for
    a provisioned, imported or custom model's ARN (its family is not in its id)."""
    _, base = split_model_id(model_id)
    return base.split(".", 1)[0] if base else None


def self_preference(judges: Sequence[str], generators: Sequence[str]) -> list[str]:
    """Judges of the same provider as a model whose answers they judge: LLM judges tend to prefer answers of their
    own family (self-preference), so such a judge's scores favour that approach."""
    families = {provider(g) for g in generators} - {None}
    return [f"judge {judge} is from the same model family ({provider(judge)}) as a generator it judges: its scores "
            "may favour that generator's answers (self-preference); prefer judges of other families"
            for judge in judges if provider(judge) in families]


def tool_choice(model_id: str) -> ToolChoice:
    """How a judge call to ``model_id`` can ask for the ``record_scores`` tool (``none``: reply in JSON text)."""
    _, base = split_model_id(model_id)
    provider = (base or "").split(".", 1)[0]
    return _TOOL_CHOICE.get(provider, "auto")


def profile_prefix(region: str) -> str:
    """The geographic profile prefix for a source region (``us-east-1`` -> ``us``)."""
    area = region.split("-", 1)[0]
    return {"us": "us", "eu": "eu", "ap": "apac", "ca": "ca"}.get(area, "global")


@dataclass(frozen=True)
class ConfiguredModel:
    """A model the run will call: its id, its role in words and the setting that chooses it."""

    model_id: str
    role: str        # "generator", "judge"
    setting: str     # where the user changes it


@dataclass(frozen=True)
class Availability:
    """Bedrock's answer for one foundation model: ``details`` (``modelDetails``) or the refusal's code/message."""

    details: Mapping[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None


def access_findings(models: Sequence[ConfiguredModel], answers: Mapping[str, Availability],
                    region: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the configured models from Bedrock's answers keyed by foundation model id.

    Errors: the model is not offered in ``region`` (unknown id, end of life) or a bare id names a model AWS serves
    there only through an inference profile. Warnings: Legacy models (with their end-of-life date).
    """
    errors: list[str] = []
    warnings: list[str] = []
    for model in models:
        prefix, base = split_model_id(model.model_id)
        if base is None or base not in answers:
            continue  # provisioned / custom model ARN: not a foundation model's lifecycle
        answer = answers[base]
        name = f"{model.role} model {model.model_id!r}"
        if answer.details is None:
            errors.append(f"{name} cannot be called in {region}: Bedrock answered {answer.error_code}: "
                          f"{answer.error_message} (end of life, or not offered in this region). Pick an Active "
                          f"model of the Bedrock console's model catalog for {region} and set {model.setting}.")
            continue
        types = answer.details.get("inferenceTypesSupported") or []
        if prefix is None and "ON_DEMAND" not in types and "INFERENCE_PROFILE" in types:
            errors.append(f"{name} is served in {region} only through a cross-region inference profile: set "
                          f"{model.setting} to '{profile_prefix(region)}.{base}' (the profile id) instead.")
        life = answer.details.get("modelLifecycle") or {}
        if life.get("status") == "LEGACY":
            end = _day(life.get("endOfLifeTime"))
            warnings.append(f"{name} is Legacy{f' (end of life {end})' if end else ''}: calls fail after that date "
                            f"and new accounts cannot use it; move to an Active model ({model.setting}).")
    return errors, warnings


def _day(value: Any) -> str | None:
    if value is None:
        return None
    return value.date().isoformat() if hasattr(value, "date") else str(value)[:10]


def judges_answered(errors_by_judge: Mapping[str, Sequence[bool]], min_share: float = 0.5) -> list[str]:
    """Judges that scored at least ``min_share`` of the answers they were given (``True`` = a call in error)."""
    return [judge for judge, errors in errors_by_judge.items()
            if errors and sum(not e for e in errors) >= min_share * len(errors)]


def required_judges(min_judges: int, asked: int) -> int:
    """How many judges must answer: the configured minimum, or every judge when fewer were asked on purpose."""
    return max(1, min(min_judges, asked))
