"""Tasks of ``monthly_finetune``: training data -> JumpStart training -> challenger -> champion/challenger."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from tailor_airflow.assets import FINETUNED_MODEL
from tailor_airflow.clients import settings_and_s3

CHAMPION_KEY = "finetune/champion.json"


@task(multiple_outputs=True)
def prepare_training_data(**context: Any) -> dict[str, Any]:
    """Training files from the catalog version the Knowledge Base holds (never a test question in them), and the
    JumpStart CreateTrainingJob request resolved for this region and instance type through the SageMaker SDK."""
    from tailor.catalog import CatalogValidationError
    from tailor.exceptions import ConfigError
    from tailor.jumpstart import EulaNotAccepted
    from tailor.kb_sync import CatalogStore
    from tailor.qa import load_qa
    from tailor.training_data import TRAINING_PREFIX, assert_no_test_leak, job_name_for, training_files, \
        training_request
    from tailor_airflow.clients import jumpstart_sdk

    cfg, s3 = settings_and_s3()
    params = context["params"]
    ft = cfg.finetune
    try:
        role_arn = cfg.require("finetune", "role_arn")
    except ConfigError as error:
        raise AirflowFailException(f"{error}: the SageMaker execution role the training job runs as; nothing was "
                                   "trained") from None
    store = CatalogStore(s3, cfg.aws.bucket, cfg.catalog, cfg.knowledge_base.data_prefix)
    marker = store.current()
    if marker is None:
        raise AirflowFailException("no catalog has been synced yet (catalog/current.json is missing): run "
                                   "catalog_kb_sync first; nothing was trained")
    try:
        catalog = store.load(marker["version_key"])
    except CatalogValidationError as error:
        raise AirflowFailException(f"catalog version {marker['catalog_version']} is invalid: {error}") from None
    method = params.get("method") or ft.method
    test_set = load_qa(cfg.qa.test_set, s3)
    train_set = load_qa(cfg.qa.train_set, s3) if method == "instruction_tuning" else None
    files = training_files(method, catalog, train_set)
    assert_no_test_leak(files, test_set)
    job_name = job_name_for(context["run_id"])
    prefix = f"finetune/{job_name}/"
    train_uri = f"s3://{cfg.aws.bucket}/{prefix}{TRAINING_PREFIX}"
    region = s3.meta.region_name
    try:  # resolved and checked before anything is uploaded
        config, resolved = training_request(
            ft, sdk=jumpstart_sdk(cfg, s3), region=region, role_arn=role_arn, job_name=job_name, method=method,
            train_uri=train_uri, output_uri=f"s3://{cfg.aws.bucket}/{prefix}output",
            epochs=params.get("epochs") or ft.epochs, learning_rate=params.get("learning_rate") or ft.learning_rate,
            instance_type=params.get("instance_type") or ft.training_instance_type)
    except EulaNotAccepted as error:
        raise AirflowFailException(f"EulaNotAccepted: {error}") from error
    except ValueError as error:  # a setting or Param outside the JumpStart spec: a retry cannot fix it
        raise AirflowFailException(f"{ft.jumpstart_model_id}: {error}; nothing was uploaded or trained") from error
    for name, content in files.items():
        s3.put_object(Bucket=cfg.aws.bucket, Key=f"{prefix}{TRAINING_PREFIX}{name}", Body=content.encode("utf-8"))
    digest = hashlib.sha256("".join(files[k] for k in sorted(files)).encode()).hexdigest()
    print(f"{method}: {len(files)} file(s) under {train_uri} from catalog {marker['catalog_version']}; training "
          f"job {job_name}: JumpStart {resolved.model_id} {resolved.model_version} on {resolved.instance_type} in "
          f"{region}, image {resolved.image_uri}")
    return {"training_config": config, "job_name": job_name, "prefix": prefix, "method": method,
            "catalog_version": marker["catalog_version"], "training_data_sha256": digest,
            "test_set_version": test_set.version, "jumpstart_model_version": resolved.model_version}


@task(multiple_outputs=True)
def deployment_configs(job_name: str, training: dict[str, Any]) -> dict[str, Any]:
    """Model, endpoint config and challenger endpoint requests for the trained (uncompressed) model files."""
    from tailor.config import settings
    from tailor.training_data import model_data_source

    cfg = settings()
    ft = cfg.finetune
    artifact = training["Training"]["ModelArtifacts"]["S3ModelArtifacts"]
    model = {"ModelName": job_name, "ExecutionRoleArn": cfg.require("finetune", "role_arn"),
             "PrimaryContainer": {"Image": ft.inference_image_uri, "ModelDataSource": model_data_source(artifact),
                                  "Environment": {"OPTION_MAX_MODEL_LEN": str(ft.max_input_length)}}}
    endpoint = {
        "EndpointConfig": {"EndpointConfigName": job_name, "ProductionVariants": [{
            "VariantName": "AllTraffic", "ModelName": job_name, "InitialInstanceCount": 1,
            "InstanceType": ft.endpoint_instance_type}]},
        "Endpoint": {"EndpointName": f"{job_name}-challenger", "EndpointConfigName": job_name},
    }
    return {"model": model, "endpoint": endpoint, "challenger_endpoint": f"{job_name}-challenger",
            "model_data_url": artifact, "billable_seconds": training["Training"].get("BillableTimeInSeconds")}


def _endpoint_exists(sagemaker: Any, name: str) -> bool:
    try:
        sagemaker.describe_endpoint(EndpointName=name)
        return True
    except sagemaker.exceptions.ClientError:
        return False


def _answers(runtime: Any, endpoint: str, questions: list[str], max_new_tokens: int) -> list[str]:
    from tailor.generation import invoke_jumpstart
    from tailor.prompts import SYSTEM, llama3_chat

    return [invoke_jumpstart(runtime, endpoint, llama3_chat(SYSTEM, q), max_new_tokens=max_new_tokens).text
            for q in questions]


@task
def smoke_test(endpoint_name: str) -> str:
    """One real invocation with the JumpStart request/response shape before anything depends on it."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from tailor.config import settings

    runtime = AwsBaseHook(aws_conn_id=settings().aws.conn_id, client_type="sagemaker-runtime").get_conn()
    answer = _answers(runtime, endpoint_name, ["Which products do you make?"], 32)[0]
    if not answer:
        raise AirflowFailException(f"endpoint {endpoint_name} returned an empty answer")
    print(f"smoke test answer from {endpoint_name}: {answer!r}")
    return answer


@task
def evaluate_challenger(challenger_endpoint: str) -> dict[str, Any]:
    """Mean BERTScore F1 of challenger and champion on the same held-out test questions."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from tailor.metrics.bertscore import BertScorer
    from tailor.qa import load_qa

    cfg, s3 = settings_and_s3()
    ft = cfg.finetune
    sagemaker = AwsBaseHook(aws_conn_id=cfg.aws.conn_id, client_type="sagemaker").get_conn()
    runtime = AwsBaseHook(aws_conn_id=cfg.aws.conn_id, client_type="sagemaker-runtime").get_conn()
    items = load_qa(cfg.qa.test_set, s3).items[: ft.eval_sample_limit]
    questions, references = [i.question for i in items], [i.answer for i in items]
    scorer = BertScorer(cfg.metrics.bertscore_model, cfg.metrics.bertscore_layers)
    result: dict[str, Any] = {"n": len(items), "metric": "bertscore_f1"}
    for role, endpoint in (("challenger", challenger_endpoint), ("champion", ft.champion_endpoint)):
        if role == "champion" and not _endpoint_exists(sagemaker, endpoint):
            result["champion"] = None
            continue
        answers = _answers(runtime, endpoint, questions, ft.max_new_tokens)
        scores = [f1 for _, _, f1 in scorer.score(answers, references)]
        result[role] = sum(scores) / len(scores)
        print(f"{role} ({endpoint}): mean BERTScore F1 {result[role]:.4f} over {len(scores)} questions")
    return result


@task(outlets=[FINETUNED_MODEL])
def promote(prepared: dict[str, Any], deployed: dict[str, Any], evaluation: dict[str, Any],
            **context: Any) -> dict[str, Any]:
    """Point the champion endpoint at the challenger only if it is not worse by more than the margin."""
    cfg, s3 = settings_and_s3()
    ft = cfg.finetune
    policy = context["params"].get("promote", "if_better")
    champion, challenger = evaluation.get("champion"), evaluation["challenger"]
    promoted = policy == "always" or (policy == "if_better" and (
        champion is None or challenger >= champion - ft.promote_margin))
    decision = {"policy": policy, "promoted": promoted, "challenger": challenger, "champion": champion,
                "margin": ft.promote_margin}
    if promoted:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        sagemaker = AwsBaseHook(aws_conn_id=cfg.aws.conn_id, client_type="sagemaker").get_conn()
        request = {"EndpointName": ft.champion_endpoint, "EndpointConfigName": prepared["job_name"]}
        if _endpoint_exists(sagemaker, ft.champion_endpoint):
            sagemaker.update_endpoint(**request)  # blue/green: SageMaker swaps to the new config
        else:
            sagemaker.create_endpoint(**request)
        sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=ft.champion_endpoint)
        pointer = {"endpoint_name": ft.champion_endpoint, "job_name": prepared["job_name"],
                   "model_data_url": deployed["model_data_url"], "catalog_version": prepared["catalog_version"],
                   "promoted_at": datetime.now(timezone.utc).isoformat(), "run_id": context["run_id"],
                   "evaluation": evaluation}
        s3.put_object(Bucket=cfg.aws.bucket, Key=CHAMPION_KEY, Body=json.dumps(pointer, indent=2).encode())
        context["outlet_events"][FINETUNED_MODEL].extra = {"job_name": prepared["job_name"],
                                                           "endpoint_name": ft.champion_endpoint}
    print(f"champion/challenger decision: {decision}")
    return decision


@task
def teardown_challenger(**context: Any) -> dict[str, Any]:
    """Delete the challenger endpoint and record the run's lineage, also when the run failed.

    Wired as a teardown of ``prepare_training_data``: it runs once anything may have been created, whatever
    happened after, and its own outcome does not decide the run's state.
    """
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from tailor.training_data import job_name_for

    cfg, s3 = settings_and_s3()
    ti = context["ti"]
    job_name = job_name_for(context["run_id"])
    prepared = ti.xcom_pull(task_ids="prepare_training_data") or {}
    sagemaker = AwsBaseHook(aws_conn_id=cfg.aws.conn_id, client_type="sagemaker").get_conn()
    challenger = f"{job_name}-challenger"
    deleted = _endpoint_exists(sagemaker, challenger)
    if deleted:
        sagemaker.delete_endpoint(EndpointName=challenger)
    try:
        training = sagemaker.describe_training_job(TrainingJobName=job_name)
    except sagemaker.exceptions.ClientError:
        training = {}
    decision = ti.xcom_pull(task_ids="promote")
    lineage = {
        "run_id": context["run_id"], "job_name": job_name,
        "status": "promoted" if decision and decision["promoted"] else "kept_champion" if decision else "failed",
        "catalog_version": prepared.get("catalog_version"), "method": prepared.get("method"),
        "training_data_sha256": prepared.get("training_data_sha256"),
        "test_set_version": prepared.get("test_set_version"),
        "training_status": training.get("TrainingJobStatus"), "failure_reason": training.get("FailureReason"),
        "billable_seconds": training.get("BillableTimeInSeconds"),
        "hyperparameters": training.get("HyperParameters"),
        "final_metrics": {m["MetricName"]: m["Value"] for m in training.get("FinalMetricDataList", [])},
        "model_data_url": (training.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        "decision": decision, "challenger_endpoint_deleted": deleted,
        "recorded_at": datetime.now(timezone.utc).isoformat(),
    }
    key = f"finetune/{job_name}/lineage.json"
    s3.put_object(Bucket=cfg.aws.bucket, Key=key, Body=json.dumps(lineage, indent=2, default=str).encode())
    print(f"lineage s3://{cfg.aws.bucket}/{key}: {lineage['status']}")
    return lineage
