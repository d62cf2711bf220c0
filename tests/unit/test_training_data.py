"""Unit tests of the fine-tuning inputs: tailor.training_data, tailor.qa and tailor.generation.

No AWS: the CreateTrainingJob request is checked against botocore's own service model, and the SageMaker
runtime / S3 clients are MagicMocks.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from tailor.catalog import Catalog, validate_file
from tailor.config import FinetuneSettings, load_settings
from tailor.exceptions import QADatasetError, TailorError
from tailor.generation import LLAMA3_STOP, Answer, invoke_jumpstart, parse_generated_text
from tailor.qa import INCLUDE_DIR, QADataset, QAItem, load_qa, normalise, parse_qa
from tailor.training_data import (
    INSTRUCTION_TEMPLATE,
    METHODS,
    assert_no_test_leak,
    check_serving_context,
    hosting_configs,
    job_name_for,
    model_artifacts_prefix,
    model_data_source,
    training_files,
    training_request,
)
from tests.conftest import SAMPLE_CATALOG

SAGEMAKER_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")

RUN_IDS = [
    "manual__2026-11-01T03:00:00+00:00",
    "scheduled__2026-11-01T03:00:00+00:00",
    "scheduled__2026-12-01T03:00:00+00:00",
    "backfill__2026-10-01T03:00:00+00:00",
    "asset_triggered__2026-11-01T03:00:00.123456+00:00",
    "x" * 500,
    "ünïcödé run / with spaces & symbols: #1",
    "",
]


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return validate_file(SAMPLE_CATALOG)


@pytest.fixture(scope="module")
def train_set() -> QADataset:
    return load_qa("data/qa/train.json")


@pytest.fixture(scope="module")
def test_set() -> QADataset:
    return load_qa("data/qa/test.json")


@pytest.fixture(scope="module")
def ft() -> FinetuneSettings:
    return load_settings(env={}).finetune


@pytest.fixture(scope="module")
def create_training_job_shape() -> Any:
    import botocore.session

    client = botocore.session.get_session().create_client("sagemaker", region_name="us-east-1")
    return client.meta.service_model.operation_model("CreateTrainingJob").input_shape


def qa_bytes(items: Any) -> bytes:
    return json.dumps(items).encode("utf-8")


def qa_item(question: str = "What is the rated power of the Widget W-1?", **extra: Any) -> dict[str, Any]:
    return {"product_name": "Widget W-1", "question": question, "answer": "It is rated at 5 kW.", **extra}


def with_extra_item(dataset: QADataset, item: QAItem) -> QADataset:
    return dataclasses.replace(dataset, items=(*dataset.items, item))


def shouty(question: str) -> str:
    """The same question with different case and punctuation (still the same after normalise)."""
    return "  " + question.upper().replace("?", " ?!").replace("-", " - ") + " ..."


# --- job_name_for --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run_id", RUN_IDS)
def test_job_name_is_deterministic_and_valid(run_id: str) -> None:
    name = job_name_for(run_id)
    assert name == job_name_for(run_id)
    assert len(name) <= 63
    assert SAGEMAKER_NAME_RE.fullmatch(name), name


def test_job_name_differs_per_run_id() -> None:
    names = [job_name_for(run_id) for run_id in RUN_IDS]
    assert len(set(names)) == len(RUN_IDS)


def test_job_name_is_a_pure_function_of_the_run_id() -> None:
    # Same value, different string objects: a retry in another process finds the job it started.
    run_id = "manual__2026-11-01T03:00:00+00:00"
    assert job_name_for("".join(list(run_id))) == job_name_for(run_id)
    assert job_name_for(run_id).startswith("tailor-ft-")


# --- training_files ------------------------------------------------------------------------------------------


def test_methods_constant() -> None:
    assert METHODS == ("domain_adaptation", "instruction_tuning")


def test_domain_adaptation_contains_every_product(catalog: Catalog, train_set: QADataset) -> None:
    files = training_files("domain_adaptation", catalog, train_set)
    assert list(files) == ["catalog.txt"]
    text = files["catalog.txt"]
    assert len(catalog.products) == 15
    for product in catalog.products:
        assert product.name in text
        assert product.to_document().strip() in text


def test_domain_adaptation_does_not_need_a_train_set(catalog: Catalog) -> None:
    assert training_files("domain_adaptation", catalog, None) == training_files("domain_adaptation", catalog,
                                                                                  load_qa("data/qa/train.json"))


def test_instruction_tuning_jsonl_and_template(catalog: Catalog, train_set: QADataset) -> None:
    files = training_files("instruction_tuning", catalog, train_set)
    assert set(files) == {"train.jsonl", "template.json"}
    assert files["train.jsonl"].endswith("\n")
    lines = files["train.jsonl"].splitlines()
    assert len(lines) == len(train_set.items) == 60
    records = [json.loads(line) for line in lines]
    template = json.loads(files["template.json"])
    assert template == INSTRUCTION_TEMPLATE
    assert set(template) == {"prompt", "completion"}
    for record, item in zip(records, train_set.items, strict=True):
        assert record["instruction"] == item.question
        assert record["response"] == item.answer
        assert record["context"] == ""
        prompt = template["prompt"].format(**record)
        completion = template["completion"].format(**record)
        assert item.question in prompt
        assert "{" not in prompt and "}" not in prompt
        assert prompt.endswith("### Response:\n")
        assert completion == item.answer


@pytest.mark.parametrize("method", ["", "lora", "Domain_Adaptation", "instruction-tuning"])
def test_unknown_method_names_the_allowed_ones(catalog: Catalog, train_set: QADataset, method: str) -> None:
    with pytest.raises(ValueError, match="unknown fine-tuning method") as info:
        training_files(method, catalog, train_set)
    message = str(info.value)
    assert repr(method) in message
    for allowed in METHODS:
        assert allowed in message


def test_instruction_tuning_without_train_set(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="instruction_tuning needs the QA train set"):
        training_files("instruction_tuning", catalog, None)


# --- assert_no_test_leak -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_real_training_files_do_not_leak(catalog: Catalog, train_set: QADataset, test_set: QADataset,
                                         method: str) -> None:
    assert len(test_set.items) == 45
    assert_no_test_leak(training_files(method, catalog, train_set), test_set)


@pytest.mark.parametrize("method", METHODS)
def test_injected_test_question_is_caught(catalog: Catalog, train_set: QADataset, test_set: QADataset,
                                          method: str) -> None:
    leaked = test_set.items[0]
    assert leaked.question.isascii()
    disguised = dataclasses.replace(leaked, question=shouty(leaked.question), sample_id="disguised")
    assert disguised.question != leaked.question
    assert normalise(disguised.question) == normalise(leaked.question)
    files = training_files(method, catalog, with_extra_item(train_set, disguised))
    if method == "domain_adaptation":  # the catalog channel has no QA: put the question in the text
        files = {"catalog.txt": files["catalog.txt"] + "\n" + disguised.question}
    with pytest.raises(ValueError, match="1 test question") as info:
        assert_no_test_leak(files, test_set)
    assert repr(leaked.question) in str(info.value)
    assert "never be in a training channel" in str(info.value)


def test_injected_non_ascii_test_question_is_caught_in_instruction_tuning(
    catalog: Catalog, train_set: QADataset, test_set: QADataset
) -> None:
    """BUG: json.dumps escapes non-ASCII ("°" -> "\\u00b0") in train.jsonl, so normalise() of the JSONL text
    yields "u00b0c" where the test question yields "c": a leaked test question containing "°C" (test.json has
    one) is not detected in the instruction-tuning channel."""
    leaked = next(item for item in test_set.items if not item.question.isascii())
    assert "°" in leaked.question
    files = training_files("instruction_tuning", catalog, with_extra_item(train_set, leaked))
    with pytest.raises(ValueError, match="1 test question"):
        assert_no_test_leak(files, test_set)


def test_leak_check_counts_every_leaked_question(test_set: QADataset) -> None:
    questions = [item.question for item in test_set.items[:3]]
    with pytest.raises(ValueError, match="^3 test question"):
        assert_no_test_leak({"a.txt": questions[0], "b.txt": " ".join(questions[1:])}, test_set)


# --- the JumpStart request from settings (training_request) -------------------------------------------------


class SnapshotSDK:
    """A JumpStartSDK double answering from the local AWS's spec snapshot by the SDK's lookup rules (the real
    SDK against the local AWS is exercised in tests/localaws/test_jumpstart_contract.py)."""

    def __init__(self) -> None:
        from localaws import jumpstart_content as jc

        self.jc, self.spec = jc, jc.spec()

    def specs(self, *, model_id: str, model_version: str, region: str) -> Any:
        from types import SimpleNamespace

        assert (model_id, model_version) == (self.spec["model_id"], self.spec["version"])
        return SimpleNamespace(**{**self.spec, "hyperparameters": [SimpleNamespace(**h)
                                                                   for h in self.spec["hyperparameters"]]})

    def image_uri(self, *, model_id: str, model_version: str, region: str, instance_type: str) -> str:
        variants = self.spec["training_instance_type_variants"]
        alias = variants["variants"][instance_type.split(".")[1]]["regional_properties"]["image_uri"]
        return variants["regional_aliases"][region][alias[1:]]

    def script_uri(self, *, model_id: str, model_version: str, region: str) -> str:
        return f"s3://{self.jc.content_bucket(region)}/{self.spec['training_prepacked_script_key']}"

    def default_hyperparameters(self, **_: Any) -> dict[str, str]:
        return {h["name"]: str(h["default"]) for h in self.spec["hyperparameters"]}

    def environment(self, *, model_id: str, model_version: str, region: str, instance_type: str) -> dict[str, str]:
        key = self.jc.gated_keys()[instance_type.split(".")[1]]
        return {"SageMakerGatedModelS3Uri": f"s3://{self.jc.gated_bucket(region)}/{key}"}

    def volume_size_supported(self, instance_type: str) -> bool:
        return not instance_type.startswith(("ml.g5.", "ml.g4dn."))


ROLE = "arn:aws:iam::111122223333:role/tailor-sagemaker-execution"
US_EAST_1_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:"
                   "2.0.0-transformers4.28.1-gpu-py310-cu118-ubuntu20.04")


def make_request(ft: FinetuneSettings, method: str = "domain_adaptation", **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "sdk": SnapshotSDK(), "region": "us-east-1", "role_arn": ROLE,
        "job_name": job_name_for("manual__2026-11-01T03:00:00+00:00"),
        "method": method,
        "train_uri": "s3://tailor-bakeoff/finetune/tailor-ft-abc/training/",
        "output_uri": "s3://tailor-bakeoff/finetune/tailor-ft-abc/output",
        "epochs": 5,
        "learning_rate": 0.0001,
        "instance_type": ft.training_instance_type,
    }
    kwargs.update(overrides)
    request, resolved = training_request(ft, **kwargs)
    assert resolved.model_version == ft.jumpstart_model_version
    return request


def test_the_us_east_1_g5_request_is_jumpstarts(ft: FinetuneSettings) -> None:
    """What monthly_finetune sends for the runbook's region and instance type (printed: see the issue note)."""
    from localaws.jumpstart_content import check_training_request

    assert ft.training_instance_type == "ml.g5.12xlarge" and ft.accept_eula is True
    request = make_request(ft)
    print(json.dumps(request, indent=1))
    assert request["AlgorithmSpecification"] == {"TrainingImage": US_EAST_1_IMAGE, "TrainingInputMode": "File"}
    hp = request["HyperParameters"]
    assert hp["sagemaker_program"] == "transfer_learning.py"
    assert hp["sagemaker_submit_directory"] == "/opt/ml/input/data/code/sourcedir.tar.gz"
    assert (hp["epoch"], hp["learning_rate"], hp["max_input_length"]) == ("5", "0.0001", "1024")
    assert (hp["lora_r"], hp["lora_alpha"], hp["per_device_train_batch_size"]) == ("8", "32", "4")
    assert hp["instruction_tuned"] == "False" and hp["chat_dataset"] == "False"
    assert "local_trainable_layers" not in hp and not any("local" in k for k in hp)
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels == {
        "training": "s3://tailor-bakeoff/finetune/tailor-ft-abc/training/",
        "code": "s3://jumpstart-cache-prod-us-east-1/source-directory-tarballs/training/meta-textgeneration/"
                "prepack/inference-meta-textgeneration/v1.2.0/sourcedir.tar.gz"}
    assert request["Environment"] == {
        "SageMakerGatedModelS3Uri": "s3://jumpstart-private-cache-prod-us-east-1/meta-training/g5/v1.0.0/"
                                    "train-meta-textgeneration-llama-3-1-8b-instruct.tar.gz",
        "accept_eula": "true"}
    assert request["EnableNetworkIsolation"] is True and request["EnableInterContainerTrafficEncryption"] is True
    assert request["OutputDataConfig"] == {"S3OutputPath": "s3://tailor-bakeoff/finetune/tailor-ft-abc/output",
                                           "CompressionType": "NONE"}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": ft.max_runtime_seconds} == {
        "MaxRuntimeInSeconds": 86400}
    assert request["RoleArn"] == ROLE
    assert {"Key": "project", "Value": "tailor-bakeoff"} in request["Tags"]
    check_training_request(request)  # and the local AWS's contract accepts it


@pytest.mark.parametrize(("method", "instruction_tuned"),
                         [pytest.param("domain_adaptation", "False", id="domain_adaptation"),
                          pytest.param("instruction_tuning", "True", id="instruction_tuning")])
def test_params_and_method_reach_the_hyperparameters(ft: FinetuneSettings, method: str,
                                                     instruction_tuned: str) -> None:
    hp = make_request(ft, method, epochs=3, learning_rate=0.0002)["HyperParameters"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in hp.items())
    assert (hp["instruction_tuned"], hp["epoch"], float(hp["learning_rate"])) == (instruction_tuned, "3", 0.0002)


def test_settings_instance_type_and_runtime_come_through() -> None:
    settings = load_settings(env={"TAILOR__FINETUNE__MAX_RUNTIME_SECONDS": "7200",
                                  "TAILOR__FINETUNE__TRAINING_INSTANCE_TYPE": "ml.g4dn.12xlarge"}).finetune
    request = make_request(settings, instance_type=settings.training_instance_type)
    assert request["ResourceConfig"]["InstanceType"] == "ml.g4dn.12xlarge"
    assert request["StoppingCondition"]["MaxRuntimeInSeconds"] == 7200
    assert "/g4dn/" in request["Environment"]["SageMakerGatedModelS3Uri"]  # the weights for the instance family


def test_a_license_not_accepted_stops_before_anything_is_built() -> None:
    from tailor.jumpstart import EulaNotAccepted

    settings = load_settings(env={"TAILOR__FINETUNE__ACCEPT_EULA": "false"}).finetune
    assert settings.accept_eula is False
    with pytest.raises(EulaNotAccepted, match="TAILOR__FINETUNE__ACCEPT_EULA"):
        make_request(settings)


@pytest.mark.parametrize("method", METHODS)
def test_request_validates_against_botocore(ft: FinetuneSettings, create_training_job_shape: Any,
                                            method: str) -> None:
    from botocore.validate import validate_parameters

    validate_parameters(make_request(ft, method), create_training_job_shape)


def test_botocore_validation_catches_a_broken_request(ft: FinetuneSettings, create_training_job_shape: Any) -> None:
    """The schema check above is not vacuous: a non-string hyperparameter is rejected."""
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    request = make_request(ft)
    request["HyperParameters"]["epoch"] = 5
    with pytest.raises(ParamValidationError, match="HyperParameters.epoch"):
        validate_parameters(request, create_training_job_shape)


# --- the trained model's location ------------------------------------------------------------------------------


def test_uncompressed_artifacts_are_a_prefix_and_a_model_data_source() -> None:
    prefix = model_artifacts_prefix("s3://b/finetune/j/output", "tailor-ft-abc")
    assert prefix == "s3://b/finetune/j/output/tailor-ft-abc/output/model/"
    assert model_artifacts_prefix("s3://b/finetune/j/output/", "tailor-ft-abc") == prefix
    source = {"S3DataSource": {"S3Uri": prefix, "S3DataType": "S3Prefix", "CompressionType": "None"}}
    assert model_data_source(prefix) == source
    assert model_data_source(prefix.rstrip("/")) == source  # the trailing "/" CreateModel needs
    with pytest.raises(ValueError, match="compressed artifact"):
        model_data_source("s3://b/j/output/model.tar.gz")
    with pytest.raises(ValueError, match="s3://"):
        model_data_source("/tmp/model/")


def test_model_data_source_validates_against_botocore() -> None:
    import botocore.session
    from botocore.validate import validate_parameters

    client = botocore.session.get_session().create_client("sagemaker", region_name="us-east-1")
    shape = client.meta.service_model.operation_model("CreateModel").input_shape
    validate_parameters({"ModelName": "m", "ExecutionRoleArn": ROLE, "PrimaryContainer": {
        "Image": "img", "ModelDataSource": model_data_source("s3://b/j/output/model/")}}, shape)


def test_jumpstart_does_not_add_a_second_demarcation_key(ft: FinetuneSettings) -> None:
    """JumpStart adds "### Response:\\n" between prompt and completion unless told not to (spec hyperparameter
    ``add_input_output_demarcation_key``, default True); our template's prompt ends in it already."""
    assert INSTRUCTION_TEMPLATE["prompt"].endswith("### Response:\n")
    assert make_request(ft, "instruction_tuning")["HyperParameters"]["add_input_output_demarcation_key"] == "False"


# --- hosting_configs: what serves the trained artifact ----------------------------------------------------------


def _shape(operation: str) -> Any:
    import botocore.session

    client = botocore.session.get_session().create_client("sagemaker", region_name="us-east-1")
    return client.meta.service_model.operation_model(operation).input_shape


def test_hosting_serves_the_context_setting_not_the_training_length(ft: FinetuneSettings) -> None:
    hosting = hosting_configs(ft, name="tailor-ft-0123456789ab", model_data_url="s3://b/out/model/", role_arn=ROLE)
    container = hosting["model"]["PrimaryContainer"]
    assert container["Environment"] == {"OPTION_MAX_MODEL_LEN": "4096"}
    assert ft.max_model_len == 4096 != ft.max_input_length
    assert container["ModelDataSource"] == model_data_source("s3://b/out/model/")
    assert container["Image"] == ft.inference_image_uri and hosting["model"]["ExecutionRoleArn"] == ROLE
    overridden = load_settings(env={"TAILOR__FINETUNE__MAX_MODEL_LEN": "8192"}).finetune
    container = hosting_configs(overridden, name="n", model_data_url="s3://b/m/", role_arn=ROLE)["model"][
        "PrimaryContainer"]
    assert container["Environment"]["OPTION_MAX_MODEL_LEN"] == "8192"


def test_hosting_uses_jumpstarts_container_timeouts(ft: FinetuneSettings) -> None:
    """JumpStart deploys Llama 3.1 with 1200 s for the model download and for the startup health check (spec
    ``deploy_kwargs``), as the endpoint config's production variant sets them."""
    hosting = hosting_configs(ft, name="n", model_data_url="s3://b/m/", role_arn=ROLE)
    variant, = hosting["endpoint_config"]["ProductionVariants"]
    assert variant["ModelDataDownloadTimeoutInSeconds"] == 1200
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 1200
    assert (variant["ModelName"], variant["InstanceType"]) == ("n", ft.endpoint_instance_type)


def test_hosting_requests_validate_against_botocore(ft: FinetuneSettings) -> None:
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    hosting = hosting_configs(ft, name="tailor-ft-0123456789ab", model_data_url="s3://b/out/model/", role_arn=ROLE)
    validate_parameters(hosting["model"], _shape("CreateModel"))
    validate_parameters(hosting["endpoint_config"], _shape("CreateEndpointConfig"))
    hosting["endpoint_config"]["ProductionVariants"][0]["ContainerStartupHealthCheckTimeoutInSeconds"] = "1200"
    with pytest.raises(ParamValidationError, match="ContainerStartupHealthCheckTimeoutInSeconds"):
        validate_parameters(hosting["endpoint_config"], _shape("CreateEndpointConfig"))


def test_an_endpoint_too_short_for_the_longest_request_is_refused() -> None:
    check_serving_context(2607, 2607)
    with pytest.raises(ValueError, match=r"finetune.max_model_len=1024 is shorter .* \(2607 tokens"):
        check_serving_context(1024, 2607)


# --- parse_qa / load_qa --------------------------------------------------------------------------------------


def test_parse_qa_valid() -> None:
    data = qa_bytes([qa_item(), qa_item("How heavy is the Widget W-1?", category="factual")])
    dataset = parse_qa(data, "qa.json")
    assert dataset.source == "qa.json"
    assert len(dataset.items) == 2
    assert dataset.items[1].category == "factual"
    assert dataset.items[0].category == ""
    assert len(dataset.version) == 12 and dataset.sha256.startswith(dataset.version)


def test_parse_qa_strips_whitespace() -> None:
    item = parse_qa(qa_bytes([{"product_name": " W ", "question": " Q? ", "answer": " A. "}]), "s").items[0]
    assert (item.product_name, item.question, item.answer) == ("W", "Q?", "A.")


@pytest.mark.parametrize("data", [b"\xff\xfe[]", "[{\"question\": \"caf\xe9\"}]".encode("latin-1")],
                         ids=["utf16-bom", "latin1"])
def test_parse_qa_rejects_non_utf8(data: bytes) -> None:
    with pytest.raises(QADatasetError, match=r"^bad\.json: not UTF-8 \(byte \d+\)"):
        parse_qa(data, "bad.json")


def test_parse_qa_invalid_json_names_the_line() -> None:
    data = b'[\n  {"product_name": "W",\n   "question": "Q?"\n   "answer": "A"}\n]'
    with pytest.raises(QADatasetError, match=r"^bad\.json line 4: invalid JSON") as info:
        parse_qa(data, "bad.json")
    assert "Expecting ',' delimiter" in str(info.value)


@pytest.mark.parametrize("data", [b"{}", b'{"items": []}', b'"text"', b"42", b"null", b"[]"],
                         ids=["empty-object", "object", "string", "number", "null", "empty-list"])
def test_parse_qa_needs_a_non_empty_list(data: bytes) -> None:
    with pytest.raises(QADatasetError, match=r"^qa\.json: expected a non-empty JSON list"):
        parse_qa(data, "qa.json")


@pytest.mark.parametrize(("entry", "type_name"), [("text", "str"), (["a"], "list"), (None, "NoneType"), (3, "int")])
def test_parse_qa_item_must_be_an_object(entry: Any, type_name: str) -> None:
    with pytest.raises(QADatasetError, match=rf"qa\.json item 1: expected an object, got {type_name}"):
        parse_qa(qa_bytes([qa_item(), entry]), "qa.json")


@pytest.mark.parametrize("field", ["product_name", "question", "answer"])
@pytest.mark.parametrize("value", [None, "", "   \n", 7, ["x"]], ids=["absent", "empty", "blank", "int", "list"])
def test_parse_qa_missing_or_empty_field(field: str, value: Any) -> None:
    entry = qa_item("A different question?")
    if value is None:
        del entry[field]
    else:
        entry[field] = value
    with pytest.raises(QADatasetError) as info:
        parse_qa(qa_bytes([qa_item(), qa_item("Another one?"), entry]), "qa.json")
    message = str(info.value)
    assert f"qa.json item 2: missing or empty {field} " in message
    assert "item 0" not in message and "item 1" not in message


def test_parse_qa_names_every_missing_field_and_every_bad_item() -> None:
    with pytest.raises(QADatasetError) as info:
        parse_qa(qa_bytes([{"product_name": "W"}, qa_item(), "x"]), "qa.json")
    lines = str(info.value).splitlines()
    assert lines[0].startswith("qa.json item 0: missing or empty question, answer")
    assert lines[1] == "qa.json item 2: expected an object, got str"
    assert len(lines) == 2


def test_parse_qa_duplicate_after_normalisation_names_both_items() -> None:
    items = [qa_item("What is the rated power of the Widget W-1?"),
             qa_item("How heavy is it?"),
             qa_item("what is the RATED power of the widget w 1")]
    with pytest.raises(QADatasetError, match=r"qa\.json item 2: duplicate of item 0 \(question 'what is the RATED"):
        parse_qa(qa_bytes(items), "qa.json")


def test_parse_qa_accepts_a_utf8_bom() -> None:
    data = qa_bytes([qa_item("Is the setpoint below 5 °C allowed?")])
    dataset = parse_qa(b"\xef\xbb\xbf" + data, "bom.json")
    assert dataset.items[0].question == "Is the setpoint below 5 °C allowed?"
    assert dataset.items == parse_qa(data, "plain.json").items


def test_parse_qa_allows_extra_fields() -> None:
    dataset = parse_qa(qa_bytes([qa_item(difficulty="hard", tags=["a"], category="factual", source_page=3)]), "q")
    assert dataset.items[0].category == "factual"
    assert not hasattr(dataset.items[0], "difficulty")


def test_sample_id_is_stable_across_loads() -> None:
    first = load_qa("data/qa/test.json")
    second = load_qa(str(INCLUDE_DIR / "data" / "qa" / "test.json"))
    assert [i.sample_id for i in first.items] == [i.sample_id for i in second.items]
    assert len({i.sample_id for i in first.items}) == len(first.items)
    assert first.sha256 == second.sha256
    # Stable across formatting changes of the file too: the id depends on the normalised question only.
    reformatted = json.dumps(json.loads((INCLUDE_DIR / "data" / "qa" / "test.json").read_bytes()),
                             indent=None, ensure_ascii=True).encode()
    assert [i.sample_id for i in parse_qa(reformatted, "x").items] == [i.sample_id for i in first.items]


def test_sample_id_from_id_field_when_present() -> None:
    dataset = parse_qa(qa_bytes([qa_item(id="q-001"), qa_item("Second?", id=17), qa_item("Third?")]), "q")
    assert dataset.items[0].sample_id == "q-001"
    assert dataset.items[1].sample_id == "17"
    assert re.fullmatch(r"[0-9a-f]{12}", dataset.items[2].sample_id)


def test_load_qa_relative_path_is_under_include() -> None:
    dataset = load_qa("data/qa/train.json")
    assert dataset.source == str(INCLUDE_DIR / "data" / "qa" / "train.json")
    assert len(dataset.items) == 60


def test_load_qa_missing_path(tmp_path: Path) -> None:
    with pytest.raises(QADatasetError, match="QA file not found"):
        load_qa("data/qa/does-not-exist.json")
    with pytest.raises(QADatasetError, match="QA file not found"):
        load_qa(str(INCLUDE_DIR / "data" / "qa" / "does-not-exist.json"))
    # outside include/ the answer is the same whether the file exists or not: no probing of the host
    (tmp_path / "exists.json").write_bytes(qa_bytes([qa_item()]))
    for name in ("nope.json", "exists.json"):
        with pytest.raises(QADatasetError, match=r"outside .*; local files are read under"):
            load_qa(str(tmp_path / name))


def test_load_qa_s3_needs_a_client() -> None:
    with pytest.raises(QADatasetError, match=r"s3://bucket/qa/test\.json: an S3 client is needed"):
        load_qa("s3://bucket/qa/test.json")


def test_load_qa_from_s3_client() -> None:
    s3 = mock.MagicMock()
    s3.get_object.return_value = {"Body": io.BytesIO(qa_bytes([qa_item()]))}
    dataset = load_qa("s3://bucket/qa/sub/test.json", s3)
    s3.get_object.assert_called_once_with(Bucket="bucket", Key="qa/sub/test.json")
    assert dataset.source == "s3://bucket/qa/sub/test.json"
    assert len(dataset.items) == 1


def test_qa_errors_are_tailor_value_errors() -> None:
    assert issubclass(QADatasetError, TailorError) and issubclass(QADatasetError, ValueError)


# --- generation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [{"generated_text": "  hello \n"}, [{"generated_text": "hello"}],
                                     [{"generated_text": " hello"}, {"generated_text": "ignored"}]],
                         ids=["lmi-dict", "tgi-list", "tgi-list-first"])
def test_parse_generated_text_shapes(payload: Any) -> None:
    assert parse_generated_text(payload) == "hello"


@pytest.mark.parametrize("payload", [{}, [], {"generated_text": None}, {"generated_text": 3}, ["hello"],
                                     "hello", None, {"outputs": "x"}, [[{"generated_text": "x"}]]])
def test_parse_generated_text_errors(payload: Any) -> None:
    with pytest.raises(ValueError, match="unexpected endpoint response"):
        parse_generated_text(payload)


def test_parse_generated_text_error_is_truncated() -> None:
    with pytest.raises(ValueError) as info:
        parse_generated_text({"text": "x" * 1000})
    assert len(str(info.value)) < 300


def fake_runtime(body: bytes = b'{"generated_text": " hi "}') -> mock.MagicMock:
    runtime = mock.MagicMock()
    runtime.invoke_endpoint.return_value = {"Body": io.BytesIO(body)}
    return runtime


def test_invoke_jumpstart_greedy() -> None:
    runtime = fake_runtime()
    answer = invoke_jumpstart(runtime, "tailor-challenger", "Question?", max_new_tokens=128)
    assert isinstance(answer, Answer)
    assert answer.text == "hi"
    assert answer.latency_ms > 0
    runtime.invoke_endpoint.assert_called_once()
    kwargs = runtime.invoke_endpoint.call_args.kwargs
    assert kwargs["EndpointName"] == "tailor-challenger"
    assert kwargs["ContentType"] == "application/json"
    assert kwargs["Accept"] == "application/json"
    body = json.loads(kwargs["Body"])
    assert body["inputs"] == "Question?"
    parameters = body["parameters"]
    assert parameters["max_new_tokens"] == 128
    assert "<|eot_id|>" in parameters["stop"] and LLAMA3_STOP == "<|eot_id|>"
    assert parameters["do_sample"] is False
    assert "temperature" not in parameters


def test_invoke_jumpstart_sampling() -> None:
    runtime = fake_runtime(b'[{"generated_text": "sampled"}]')
    answer = invoke_jumpstart(runtime, "ep", "Q", max_new_tokens=16, temperature=0.7)
    parameters = json.loads(runtime.invoke_endpoint.call_args.kwargs["Body"])["parameters"]
    assert parameters["do_sample"] is True
    assert parameters["temperature"] == 0.7
    assert parameters["max_new_tokens"] == 16
    assert answer.text == "sampled"
    assert answer.input_tokens is None and answer.output_tokens is None


def test_invoke_jumpstart_stop_sequences_always_end_the_llama3_turn() -> None:
    runtime = fake_runtime()
    invoke_jumpstart(runtime, "ep", "Q", max_new_tokens=8, stop=("\nQuestion:", LLAMA3_STOP, ""))
    parameters = json.loads(runtime.invoke_endpoint.call_args.kwargs["Body"])["parameters"]
    assert parameters["stop"] == [LLAMA3_STOP, "\nQuestion:"]
    runtime = fake_runtime()
    invoke_jumpstart(runtime, "ep", "Q", max_new_tokens=8, stop=())
    assert json.loads(runtime.invoke_endpoint.call_args.kwargs["Body"])["parameters"]["stop"] == [LLAMA3_STOP]


def test_invoke_jumpstart_bad_response() -> None:
    with pytest.raises(ValueError, match="unexpected endpoint response"):
        invoke_jumpstart(fake_runtime(b'{"error": "model not loaded"}'), "ep", "Q", max_new_tokens=8)


# --- leak check in any script ------------------------------------------------------------------------------------

NON_LATIN_TEST = [
    {"product_name": "Vortex Mixer VM-200", "question": "VM-200のボウル容量は何リットルですか？",
     "answer": "ボウル容量は200リットルです。"},
    {"product_name": "Vortex Mixer VM-200", "question": "Каков объём чаши VM-200?",
     "answer": "Объём чаши — 200 литров."},
    {"product_name": "Vortex Mixer VM-200", "question": "Πόση είναι η χωρητικότητα του κάδου του VM-200;",
     "answer": "Ο κάδος χωράει 200 λίτρα."},
]
#: Training text in the same scripts, about the same product, without any of the test questions.
NON_LATIN_TRAINING = ("VM-200の最高回転数は毎分1500回転です。モーターを止めてから蓋を開けてください。\n"
                      "Какова максимальная скорость VM-200? 1500 об/мин.\n"
                      "Ποια είναι η μέγιστη ταχύτητα του VM-200; 1500 στροφές.")


def test_non_latin_test_set_has_no_false_leak() -> None:
    """BUG: normalise() kept only [a-z0-9], so every question here was "vm 200", found in any text naming it."""
    test_set = parse_qa(qa_bytes(NON_LATIN_TEST), "test.json")
    assert_no_test_leak({"catalog.txt": NON_LATIN_TRAINING}, test_set)


@pytest.mark.parametrize("index", range(len(NON_LATIN_TEST)), ids=["japanese", "russian", "greek"])
def test_non_latin_leak_is_found(index: int) -> None:
    test_set = parse_qa(qa_bytes(NON_LATIN_TEST), "test.json")
    question = NON_LATIN_TEST[index]["question"]
    files = training_files("instruction_tuning", validate_file(SAMPLE_CATALOG),
                           parse_qa(qa_bytes([{**NON_LATIN_TEST[index], "question": question.upper() + "!!"}]), "t"))
    with pytest.raises(ValueError, match="^1 test question") as info:
        assert_no_test_leak({**files, "extra.txt": NON_LATIN_TRAINING}, test_set)
    assert repr(question) in str(info.value)


def test_punctuation_only_question_is_no_leak() -> None:
    test_set = parse_qa(qa_bytes([qa_item("?!"), qa_item()]), "test.json")
    assert_no_test_leak({"a.txt": "Any training text at all."}, test_set)
