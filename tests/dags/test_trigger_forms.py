"""Trigger forms: what the UI renders comes from the *serialized* DAG, so check the Params after a round trip.

Every Param must have a type, a useful description, bounds (numbers), a length limit or enum (strings), typed
and bounded items (arrays), and a default that its own schema accepts, so the form is self-explanatory and
an empty form submits a valid run.
"""

from __future__ import annotations

import jsonschema
import pytest

from devstack.stack import REPO


@pytest.fixture(scope="module")
def serialized_dags() -> dict:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return {dag_id: DagSerialization.from_dict(DagSerialization.to_dict(dag)) for dag_id, dag in bag.dags.items()}


def _types(schema: dict) -> set[str | None]:  # {None}: no type declared
    declared = schema.get("type")
    return set(declared) if isinstance(declared, list) else {declared}


def form_problems(name: str, schema: dict, description: str | None, default: object) -> list[str]:
    """What would make the trigger-form field for one Param confusing or unsafe (empty list: fine)."""
    problems = []
    types = _types(schema) - {"null"}
    if not types or None in types:
        problems.append(f"{name}: no type")
    if len(description or "") < 20:
        problems.append(f"{name}: no useful description")
    low, high = {"minimum", "exclusiveMinimum"} & set(schema), {"maximum", "exclusiveMaximum"} & set(schema)
    if types & {"integer", "number"} and not (low and high):
        problems.append(f"{name}: a number needs minimum and maximum")
    if "string" in types and not ("enum" in schema or "maxLength" in schema):
        problems.append(f"{name}: a string needs an enum or a maxLength")
    if "array" in types:
        items = schema.get("items") or {}
        if not items.get("type"):
            problems.append(f"{name}: array items need a type")
        if "minItems" not in schema:
            problems.append(f"{name}: an array needs minItems")
    try:
        jsonschema.validate(default, schema)
    except jsonschema.ValidationError as error:
        problems.append(f"{name}: the default {default!r} fails its own schema ({error.message})")
    return problems


def test_every_serialized_param_renders_a_self_explanatory_form(serialized_dags: dict) -> None:
    problems = []
    for dag_id, dag in sorted(serialized_dags.items()):
        assert dag.params, f"{dag_id} has no Params"
        for name in dag.params:
            param = dag.params.get_param(name)
            problems += [f"{dag_id}.{p}" for p in form_problems(name, param.schema, param.description, param.value)]
    assert problems == []


@pytest.mark.parametrize(
    ("schema", "description", "default", "expected"),
    [
        pytest.param({"type": "integer"}, "How many samples to evaluate", 3, "minimum and maximum", id="unbounded"),
        pytest.param({"type": "string", "maxLength": 9}, "short", "x", "description", id="no-description"),
        pytest.param({"type": "string"}, "A free text field, no limit", "x", "enum or a maxLength", id="no-limit"),
        pytest.param({"type": "array", "minItems": 1}, "A list of untyped things", ["a"], "items need a type",
                     id="untyped-items"),
        pytest.param({"type": "integer", "minimum": 1, "maximum": 5}, "A bounded count of things", 9,
                     "fails its own schema", id="bad-default"),
    ],
)
def test_the_form_check_catches_each_problem(schema: dict, description: str, default: object,
                                             expected: str) -> None:
    assert any(expected in p for p in form_problems("p", schema, description, default))


@pytest.mark.parametrize(("judges", "valid"), [
    (["amazon.nova-pro-v1:0", "us.meta.llama3-1-8b-instruct-v1:0"], True),
    (["arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-1-8b-instruct-v1:0"], True),
    (["arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0"], True),
    (["a b"], False), ([""], False), (["x" * 257], False), (["{{ conn.aws_default.password }}"], False),
], ids=["ids", "profile-arn", "foundation-arn", "space", "empty", "too-long", "template"])
def test_judge_models_form_accepts_only_bedrock_model_ids(serialized_dags: dict, judges: list[str],
                                                          valid: bool) -> None:
    from tailor.bedrock_ids import MODEL_ID_PATTERN

    schema = serialized_dags["weekly_evaluation"].params.get_param("judge_models").schema
    assert schema["items"]["pattern"] == MODEL_ID_PATTERN  # one definition, shared with the task's own check
    if valid:
        jsonschema.validate(judges, schema)
    else:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(judges, schema)
