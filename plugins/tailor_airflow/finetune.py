"""Tasks of ``monthly_finetune``: training data -> JumpStart training -> challenger -> champion/challenger."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import AssetAlias, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from tailor.config import parse_time_setting
from tailor_airflow.assets import FINETUNED_MODEL
from tailor_airflow.clients import CHAMPION_KEY, champion_method, settings_and_s3

#: ``promote``'s outlet: an event for ``finetuned-model`` is added through it only when the champion endpoint was
#: seen InService on the new configuration (a plain outlet would announce every successful ``promote``, including
#: "kept the champion", and start the weekly evaluation that listens to the asset for nothing).
PROMOTIONS = AssetAlias(name="finetuned-model-promotions")
#: Endpoint waits (seconds): poll interval, and how long a create/update/delete may take (an 8B LMI endpoint
#: takes 10-30 min to come up on AWS; a blue/green update as long, plus the old fleet's draining).
POLL_SECONDS: int = parse_time_setting("finetune", "poll_seconds")
ENDPOINT_TIMEOUT_SECONDS: int = parse_time_setting("finetune", "endpoint_timeout_seconds")


@task(multiple_outputs=True)
def prepare_training_data(**context: Any) -> dict[str, Any]:
    """Training files from the catalog version the Knowledge Base holds (never a test question in them), and the
    JumpStart CreateTrainingJob request resolved for this region and instance type through the SageMaker SDK."""
    from tailor.catalog import CatalogValidationError
    from tailor.exceptions import ConfigError
    from tailor.jumpstart import EulaNotAccepted
    from tailor.kb_sync import CatalogStore
    from tailor.lineage import training_data_digest
    from tailor.qa import load_qa
    from tailor.training_data import (
        TRAINING_PREFIX,
        assert_no_test_leak,
        job_name_for,
        training_files,
        training_request,
    )
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
    digest = training_data_digest(files)
    print(f"{method}: {len(files)} file(s) under {train_uri} from catalog {marker['catalog_version']}; training "
          f"job {job_name}: JumpStart {resolved.model_id} {resolved.model_version} on {resolved.instance_type} in "
          f"{region}, image {resolved.image_uri}")
    return {"training_config": config, "job_name": job_name, "prefix": prefix, "method": method,
            "catalog_version": marker["catalog_version"], "training_data_sha256": digest,
            "test_set_version": test_set.version, "jumpstart_model_version": resolved.model_version}


@task(multiple_outputs=True)
def deployment_configs(job_name: str, training: dict[str, Any]) -> dict[str, Any]:
    """Model, endpoint config and challenger endpoint requests for the trained (uncompressed) model files; refused
    (before any endpoint is paid for) when ``finetune.max_model_len`` cannot hold the evaluation's longest request."""
    from tailor.config import settings
    from tailor.prompts import serving_context_needed
    from tailor.training_data import check_serving_context, deployment_requests

    cfg = settings()
    ft, kb = cfg.finetune, cfg.knowledge_base
    needed = serving_context_needed(top_k=kb.top_k, chunk_max_tokens=kb.chunk_max_tokens,
                                    max_new_tokens=max(cfg.evaluation.max_tokens, ft.max_new_tokens))
    try:
        check_serving_context(ft.max_model_len, needed)
    except ValueError as error:
        raise AirflowFailException(str(error)) from None
    requests = deployment_requests(ft, job_name=job_name, role_arn=cfg.require("finetune", "role_arn"),
                                   model_data_url=training["Training"]["ModelArtifacts"]["S3ModelArtifacts"])
    return {**requests, "billable_seconds": training["Training"].get("BillableTimeInSeconds")}


def _waiting() -> Any:
    from tailor.endpoints import Waiting

    return Waiting(poll=POLL_SECONDS, timeout=ENDPOINT_TIMEOUT_SECONDS)


def _answers(runtime: Any, endpoint: str, method: str, questions: list[str], max_new_tokens: int) -> list[str]:
    """Answers of ``endpoint``, prompted in the format its model was trained with (``method``)."""
    from tailor.generation import invoke_jumpstart
    from tailor.prompts import endpoint_prompt, endpoint_stop_sequences

    return [invoke_jumpstart(runtime, endpoint, endpoint_prompt(method, q), max_new_tokens=max_new_tokens,
                             stop=endpoint_stop_sequences(method)).text
            for q in questions]


@task
def smoke_test(endpoint_name: str, method: str) -> str:
    """One real invocation with the JumpStart request/response shape before anything depends on it."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from tailor.config import settings

    runtime = AwsBaseHook(aws_conn_id=settings().aws.conn_id, client_type="sagemaker-runtime").get_conn()
    answer = _answers(runtime, endpoint_name, method, ["Which products do you make?"], 32)[0]
    if not answer:
        raise AirflowFailException(f"endpoint {endpoint_name} returned an empty answer")
    print(f"smoke test answer from {endpoint_name}: {answer!r}")
    return answer


@task
def evaluate_challenger(challenger_endpoint: str, method: str) -> dict[str, Any]:
    """Mean BERTScore F1 of challenger and champion on the same held-out test questions, each prompted in the
    format of its own training (the challenger's ``method``; the champion's from ``champion.json``)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from tailor.endpoints import SERVING, describe_endpoint
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
    methods = {"challenger": method, "champion": champion_method(cfg, s3)}
    result["methods"] = methods
    for role, endpoint in (("challenger", challenger_endpoint), ("champion", ft.champion_endpoint)):
        if role == "champion":  # AccessDenied/throttling raise: never read as "no champion"
            described = describe_endpoint(sagemaker, endpoint)
            result["champion_status"] = described["EndpointStatus"] if described else None
            if described is None or described["EndpointStatus"] not in SERVING:
                print(f"champion {endpoint}: {result['champion_status'] or 'absent'}, nothing to compare with")
                result["champion"] = None
                continue
        answers = _answers(runtime, endpoint, methods[role], questions, ft.max_new_tokens)
        scores = [float(f1) for _, _, f1 in scorer.score(answers, references)]
        result[role] = sum(scores) / len(scores)
        result[f"{role}_scores"] = scores  # per question, same order: the paired non-inferiority test
        print(f"{role} ({endpoint}): mean BERTScore F1 {result[role]:.4f} over {len(scores)} questions")
    return result


@task(outlets=[PROMOTIONS])
def promote(prepared: dict[str, Any], deployed: dict[str, Any], evaluation: dict[str, Any],
            **context: Any) -> dict[str, Any]:
    """Point the champion endpoint at the challenger's configuration if it is not worse by more than the margin,
    and report what SageMaker really did.

    The challenger endpoint is deleted first: a blue/green UpdateEndpoint runs the old and the new champion fleets
    side by side, so with the challenger still up the account would need three instances of the endpoint type
    (its "<type> for endpoint usage" quota) instead of two. After UpdateEndpoint (CreateEndpoint when there is no
    champion; delete + create when it is Failed) the task waits and checks: promoted only if the champion is
    InService on the new configuration with no FailureReason. A rolled-back update (InService on the old
    configuration with a FailureReason) or a Failed champion fails the task without retrying (another try would
    pay for another fleet and most likely fail the same way): the decision is recorded as ``rolled_back`` /
    ``failed`` (XCom ``decision``, then lineage), champion.json is untouched and no ``finetuned-model`` event is
    emitted. A retry after any other error resumes: it waits for an update in flight and reuses a promotion an
    earlier try completed.
    """
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from tailor.endpoints import decide, delete_endpoint, outcome_record, promote_endpoint
    from tailor.lineage import champion_pointer

    cfg, s3 = settings_and_s3()
    ft, ti = cfg.finetune, context["ti"]
    paired = None
    if evaluation.get("challenger_scores") and evaluation.get("champion_scores"):
        from tailor.metrics.paired import non_inferiority

        paired = non_inferiority(evaluation["challenger_scores"], evaluation["champion_scores"], ft.promote_margin)
    decision = decide(context["params"].get("promote", "if_better"), evaluation.get("challenger"),
                      evaluation.get("champion"), ft.promote_margin, paired)
    if not decision.promote:
        record = outcome_record(decision, None)
        ti.xcom_push(key="decision", value=record)
        print(f"champion/challenger decision: {record}")
        return record
    sagemaker = AwsBaseHook(aws_conn_id=cfg.aws.conn_id, client_type="sagemaker").get_conn()
    delete_endpoint(sagemaker, deployed["challenger_endpoint"], _waiting())  # its instances, before the update
    result = promote_endpoint(sagemaker, ft.champion_endpoint, prepared["job_name"], _waiting())
    record = outcome_record(decision, result)
    ti.xcom_push(key="decision", value=record)
    print(f"champion/challenger decision: {record}")
    if result.outcome != "promoted":
        raise AirflowFailException(
            f"promotion {result.outcome}: endpoint {ft.champion_endpoint} is "
            f"{(result.endpoint or {}).get('EndpointStatus', 'absent')} on {result.config_name}, not on "
            f"{prepared['job_name']} (FailureReason: {result.failure_reason}). champion.json and the "
            f"finetuned-model asset were not changed; see SageMaker's FailureReason, then clear this task to try "
            f"again.")
    pointer = champion_pointer(endpoint_name=ft.champion_endpoint, prepared=prepared,
                               config_name=result.config_name or prepared["job_name"],
                               model_data_url=deployed["model_data_url"], evaluation=evaluation,
                               actions=result.actions, run_id=context["run_id"], promoted_at=datetime.now(UTC))
    s3.put_object(Bucket=cfg.aws.bucket, Key=CHAMPION_KEY, Body=json.dumps(pointer, indent=2).encode())
    context["outlet_events"][PROMOTIONS].add(FINETUNED_MODEL, extra={"job_name": prepared["job_name"],
                                                                      "endpoint_name": ft.champion_endpoint})
    return record


@task
def teardown_challenger(**context: Any) -> dict[str, Any]:
    """Delete the challenger endpoint, verify it is gone, and record the run's lineage, also when the run failed.

    Wired as a teardown of ``prepare_training_data``: it runs once anything may have been created, whatever
    happened after. It waits out a challenger still Creating (AWS refuses to delete it then) and returns only when
    SageMaker says the endpoint does not exist; otherwise -- or when AWS refuses to answer (AccessDenied,
    throttling) -- it writes the lineage and then fails, and the DAG run fails with it (``on_failure_fail_dagrun``):
    an ml.g5.12xlarge left running costs about $7 an hour.
    """
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from tailor.aws_errors import describe_or_none, summary
    from tailor.endpoints import EndpointError, delete_endpoint
    from tailor.lineage import lineage_record
    from tailor.training_data import challenger_name, job_name_for

    cfg, s3 = settings_and_s3()
    ti = context["ti"]
    job_name = job_name_for(context["run_id"])
    prepared = ti.xcom_pull(task_ids="prepare_training_data") or {}
    sagemaker = AwsBaseHook(aws_conn_id=cfg.aws.conn_id, client_type="sagemaker").get_conn()
    challenger = challenger_name(job_name)
    problems: list[str] = []
    deleted = None
    try:
        deleted = delete_endpoint(sagemaker, challenger, _waiting())
    except (EndpointError, sagemaker.exceptions.ClientError) as error:
        problems.append(f"challenger endpoint {challenger} may still be running: {summary(error)}")
    try:
        training = describe_or_none(lambda: sagemaker.describe_training_job(TrainingJobName=job_name),
                                    "training job") or {}
    except sagemaker.exceptions.ClientError as error:
        problems.append(f"training job {job_name} could not be described: {summary(error)}")
        training = {}
    lineage = lineage_record(run_id=context["run_id"], job_name=job_name, prepared=prepared, training=training,
                             decision=ti.xcom_pull(task_ids="promote", key="decision"),
                             challenger_deleted=deleted is not None, problems=problems,
                             recorded_at=datetime.now(UTC))
    key = f"finetune/{job_name}/lineage.json"
    s3.put_object(Bucket=cfg.aws.bucket, Key=key, Body=json.dumps(lineage, indent=2, default=str).encode())
    print(f"lineage s3://{cfg.aws.bucket}/{key}: {lineage['status']}")
    if problems:
        raise AirflowException("; ".join(problems))
    return lineage
