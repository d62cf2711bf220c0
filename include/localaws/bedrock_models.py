"""Which Bedrock model ids the local AWS accepts, per region, and what each model's Converse supports.

A contract, not a convenience: a model id that AWS would refuse in the caller's region is refused here with
AWS's error code and message, before any local model runs. SmolLM2 stands in for every accepted model.

Sources (read 2026-11; re-check before adding a model; AWS changes availability over time):

* ``MR``/``MS``: the AWS user guide's "Supported foundation models" and "Model support by Region" pages
  (docs.aws.amazon.com/bedrock/latest/userguide/models-supported.html, models-regions.html, copy of 2026-02-15):
  which ids are invocable on demand (bare) per region, and which only through a cross-region inference
  profile (``us.``/``eu.``/``apac.``/``global.`` + the model id) from which source regions.
* ``LC``: AWS's model-lifecycle pages (docs.aws.amazon.com/bedrock/latest/userguide/model-lifecycle.html and the
  model cards) and the dated EOL reports gathered in the founders' Bedrock facts: Legacy / EOL dates.
* ``TC``: botocore's bedrock-runtime ``ToolChoice`` documentation ("``tool``: only supported by Anthropic Claude 3
  and Amazon Nova models"), the Amazon Nova user guide (tool-choice.html: ``tool``, ``any``, ``auto``) and
  observed refusals for Meta Llama (``auto`` only) and DeepSeek-R1 ("This model doesn't support tool use").
* Error texts as AWS returns them (observed, quoted in many public issues): the on-demand refusal uses the curly
  apostrophe (U+2019) in "isn’t".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

#: Regions whose availability the table records; any other region offers none of these models locally.
REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-central-1")
_US = ("us-east-1", "us-east-2", "us-west-2")


@dataclass(frozen=True)
class Model:
    """One foundation model: where it runs on demand, through which profiles, its lifecycle and Converse support."""

    model_id: str
    provider: str
    name: str
    bare: tuple[str, ...]                                  # regions with on-demand invocation of the bare id (MR)
    profiles: dict[str, tuple[str, ...]] = field(default_factory=dict)  # prefix -> source regions (MS)
    legacy_on: date | None = None                          # LC
    eol_on: date | None = None                             # LC
    tool_choices: tuple[str, ...] = ("auto",)              # TC: () = no tool use at all
    chat: bool = True                                      # False: not a Converse model (embeddings)


_D = date.fromisoformat
MODELS: dict[str, Model] = {m.model_id: m for m in (
    # Meta: Llama 3.1 in us-east-1 only through the us. profile (MR); lifecycle not Legacy in LC's lists (2026-09)
    Model("meta.llama3-1-8b-instruct-v1:0", "Meta", "Llama 3.1 8B Instruct", ("us-west-2",), {"us": _US}),
    Model("meta.llama3-1-70b-instruct-v1:0", "Meta", "Llama 3.1 70B Instruct", ("us-west-2",), {"us": _US}),
    Model("meta.llama3-3-70b-instruct-v1:0", "Meta", "Llama 3.3 70B Instruct", ("us-east-2",), {"us": _US}),
    # Anthropic (forced tool choice: TC). Claude Haiku 4.5: model card "Active, EOL no sooner than 2026-10-01",
    # profile-only like every Claude since 3.7 (MS).
    Model("anthropic.claude-haiku-4-5-20251001-v1:0", "Anthropic", "Claude Haiku 4.5", (),
          {"us": _US, "eu": ("eu-central-1",), "global": REGIONS}, tool_choices=("auto", "any", "tool")),
    Model("anthropic.claude-sonnet-4-20250514-v1:0", "Anthropic", "Claude Sonnet 4", (),
          {"us": _US, "eu": ("eu-central-1",), "global": REGIONS}, legacy_on=_D("2026-04-14"),
          eol_on=_D("2026-10-14"), tool_choices=("auto", "any", "tool")),
    Model("anthropic.claude-3-5-haiku-20241022-v1:0", "Anthropic", "Claude 3.5 Haiku", ("us-west-2",),
          {"us": ("us-east-1", "us-east-2")}, legacy_on=_D("2025-12-19"), eol_on=_D("2026-06-19"),
          tool_choices=("auto", "any", "tool")),
    Model("anthropic.claude-3-haiku-20240307-v1:0", "Anthropic", "Claude 3 Haiku",
          ("us-east-1", "us-west-2", "eu-central-1"), {"us": _US, "eu": ("eu-central-1",)},
          eol_on=_D("2026-09-10"), tool_choices=("auto", "any", "tool")),
    Model("anthropic.claude-3-5-sonnet-20241022-v2:0", "Anthropic", "Claude 3.5 Sonnet v2", ("us-west-2",),
          {"us": _US}, eol_on=_D("2026-07-30"), tool_choices=("auto", "any", "tool")),
    Model("anthropic.claude-3-7-sonnet-20250219-v1:0", "Anthropic", "Claude 3.7 Sonnet", (),
          {"us": _US, "eu": ("eu-central-1",)}, eol_on=_D("2026-04-28"), tool_choices=("auto", "any", "tool")),
    # Amazon Nova: bare in us-east-1 only; profiles us./eu. (MR); Active (LC, 2026-08); tool/any/auto (TC)
    *(Model(f"amazon.nova-{size}-v1:0", "Amazon", f"Nova {size.title()}", ("us-east-1",),
            {"us": _US, "eu": ("eu-central-1",)}, tool_choices=("auto", "any", "tool"))
      for size in ("pro", "lite", "micro")),
    # Mistral: Large 24.02 bare in us-east-1/us-west-2, Large 2 (24.07) in us-west-2 only (MR); auto/any (TC)
    Model("mistral.mistral-large-2402-v1:0", "Mistral AI", "Mistral Large (24.02)", ("us-east-1", "us-west-2"),
          tool_choices=("auto", "any")),
    Model("mistral.mistral-large-2407-v1:0", "Mistral AI", "Mistral Large 2 (24.07)", ("us-west-2",),
          tool_choices=("auto", "any")),
    # Cohere Command R / R+: EOL 2026-08-19 (LC)
    Model("cohere.command-r-v1:0", "Cohere", "Command R", ("us-east-1", "us-west-2"), eol_on=_D("2026-08-19")),
    Model("cohere.command-r-plus-v1:0", "Cohere", "Command R+", ("us-east-1", "us-west-2"), eol_on=_D("2026-08-19")),
    # DeepSeek-R1: profile only (us.), Active (LC, 2026-08); no tool use through Converse (TC)
    Model("deepseek.r1-v1:0", "DeepSeek", "DeepSeek-R1", (), {"us": _US}, tool_choices=()),
    # Titan Text Embeddings V2: InvokeModel only ("The Converse API doesn't support any embedding ... models")
    Model("amazon.titan-embed-text-v2:0", "Amazon", "Titan Text Embeddings V2",
          ("us-east-1", "us-west-2", "eu-central-1"), chat=False),
)}

#: Observed AWS error texts (see the module docstring).
INVALID_ID = "The provided model identifier is invalid."
ON_DEMAND = ("Invocation of model ID {model_id} with on-demand throughput isn\u2019t supported. Retry your request "
             "with the ID or ARN of an inference profile that contains this model.")
END_OF_LIFE = ("This model version has reached the end of its life. Please refer to the AWS documentation for more "
               "details.")
NOT_CHAT = "This action doesn't support the model that you provided. Try again with a supported text or chat model."
NO_TOOLS = "This model doesn't support tool use."
NO_TOOL_CHOICE = ("This model doesn't support the toolConfig.toolChoice.{choice} field. Remove "
                  "toolConfig.toolChoice.{choice} and try again.")

_ARN = re.compile(r"^arn:aws[a-z-]*:bedrock:(?P<region>[a-z0-9-]*):(?P<account>[0-9]*):"
                  r"(?P<kind>foundation-model|inference-profile)/(?P<id>.+)$")


class ModelRefused(Exception):
    """A request AWS refuses: ``code`` is AWS's error code, ``status`` its HTTP status."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def lifecycle(model: Model, today: date) -> str:
    """``ACTIVE``, ``LEGACY`` or ``EOL`` on ``today``."""
    if model.eol_on is not None and today >= model.eol_on:
        return "EOL"
    if model.legacy_on is not None and today >= model.legacy_on:
        return "LEGACY"
    return "ACTIVE"


def _today() -> date:
    return datetime.now(UTC).date()


#: Geographic prefixes of the cross-region inference profiles the table records (MS).
PROFILE_PREFIXES = ("us", "eu", "apac", "global")


def split_profile(model_id: str) -> tuple[str | None, str]:
    """(profile prefix or None, model id) of a bare id or a profile id (``us.meta.llama3-...`` -> ``us``, ...)."""
    head, _, rest = model_id.partition(".")
    return (head, rest) if head in PROFILE_PREFIXES and "." in rest else (None, model_id)


def resolve(model_id: str, region: str, today: date | None = None) -> Model:
    """The model a runtime call with ``model_id`` from ``region`` invokes, or :class:`ModelRefused` as AWS says.

    Accepted: a bare id where the model runs on demand in ``region``; a profile id (``us.<id>``) or profile ARN
    whose prefix lists ``region`` as a source; a foundation-model ARN of ``region``.
    """
    today = today or _today()
    target, prefix = model_id, None
    if match := _ARN.match(model_id):
        if match["region"] != region:
            raise ModelRefused("ValidationException", 400, INVALID_ID)
        target = match["id"]
        if match["kind"] == "inference-profile":
            prefix, _, target = target.partition(".")
    else:
        prefix, target = split_profile(target)
    model = MODELS.get(target)
    if model is None or (prefix is not None and region not in model.profiles.get(prefix, ())):
        raise ModelRefused("ValidationException", 400, INVALID_ID)
    if lifecycle(model, today) == "EOL":
        raise ModelRefused("ResourceNotFoundException", 404, END_OF_LIFE)
    if prefix is None and region not in model.bare:
        if any(region in sources for sources in model.profiles.values()):
            raise ModelRefused("ValidationException", 400, ON_DEMAND.format(model_id=model_id))
        raise ModelRefused("ValidationException", 400, INVALID_ID)
    return model


def check_converse(model: Model, tool_config: dict | None) -> None:
    """Refuse what the model's Converse does not support (embeddings, tool use, the requested tool choice)."""
    if not model.chat:
        raise ModelRefused("ValidationException", 400, NOT_CHAT)
    if not tool_config:
        return
    if not model.tool_choices:
        raise ModelRefused("ValidationException", 400, NO_TOOLS)
    choice = next(iter(tool_config.get("toolChoice") or {"auto": {}}), "auto")
    if choice not in model.tool_choices:
        raise ModelRefused("ValidationException", 400, NO_TOOL_CHOICE.format(choice=choice))


def _timestamp(day: date | None) -> str | None:
    return None if day is None else f"{day.isoformat()}T00:00:00Z"


def foundation_model(model_id: str, region: str, today: date | None = None) -> dict:
    """``GetFoundationModel``'s ``modelDetails`` for a model offered in ``region`` (bare or through a profile).

    After EOL a model is gone from the API ("After the EOL date, the model version can only be found on this
    documentation page", LC): :class:`ModelRefused` with ``ValidationException`` like any unknown id.
    """
    today = today or _today()
    model = MODELS.get(model_id)
    offered = model is not None and (region in model.bare or any(region in s for s in model.profiles.values()))
    if model is None or not offered or lifecycle(model, today) == "EOL":
        raise ModelRefused("ValidationException", 400, INVALID_ID)
    status = lifecycle(model, today)
    life: dict = {"status": status}
    if model.legacy_on:
        life["legacyTime"] = _timestamp(model.legacy_on)
    if model.eol_on:
        life["endOfLifeTime"] = _timestamp(model.eol_on)
    # profile-only models report INFERENCE_PROFILE (observed in list-foundation-models output; MR)
    types = ["ON_DEMAND"] if region in model.bare else ["INFERENCE_PROFILE"]
    return {
        "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{model.model_id}",
        "modelId": model.model_id, "modelName": model.name, "providerName": model.provider,
        "inputModalities": ["TEXT"], "outputModalities": ["EMBEDDING" if not model.chat else "TEXT"],
        "responseStreamingSupported": model.chat, "customizationsSupported": [],
        "inferenceTypesSupported": types, "modelLifecycle": life,
    }


def foundation_models(region: str, today: date | None = None) -> list[dict]:
    """``ListFoundationModels``' ``modelSummaries`` in ``region`` (EOL models are no longer listed)."""
    result = []
    for model_id in MODELS:
        try:
            result.append(foundation_model(model_id, region, today))
        except ModelRefused:
            continue
    return result
