"""SageMaker operators that make the provider's safe to retry.

AWS refuses to create a model, endpoint configuration or endpoint under a name that exists (``Cannot create
already existing ...``), so the provider's ``SageMakerModelOperator`` / ``SageMakerEndpointOperator`` fail every
retry after a first try that got as far as creating something. These look first (``tailor.endpoints``): reuse what
matches, replace what does not, wait for what is still coming up. A missing resource is recognised only by AWS's
"not found" answer (``tailor.aws_errors``); AccessDenied, throttling and 5xx fail the try.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerEndpointOperator,
    SageMakerModelOperator,
    SageMakerTrainingOperator,
    serialize,
)
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.sdk.exceptions import AirflowException

RUNNING, FAILED = ("InProgress", "Stopping"), ("Failed", "Stopped")


#: AWS-owned JumpStart buckets (content and gated weights, per region): the job's execution role reads them;
#: the Airflow role cannot (and need not) HeadBucket/List them, so the provider's pre-flight skips them.
AWS_OWNED_BUCKETS = ("jumpstart-cache-prod-", "jumpstart-private-cache-prod-")


def is_aws_owned(s3_uri: str) -> bool:
    return s3_uri.removeprefix("s3://").startswith(AWS_OWNED_BUCKETS)


class OwnBucketsSageMakerHook(SageMakerHook):
    """``SageMakerHook`` whose pre-flight input check (HeadBucket + HeadObject/List per channel) covers our own
    buckets only: JumpStart's ``code`` channel lives in an AWS-owned bucket, which CreateTrainingJob itself checks
    with the execution role."""

    def check_training_config(self, training_config: dict) -> None:
        channels = [c for c in training_config.get("InputDataConfig", [])
                    if not is_aws_owned(c.get("DataSource", {}).get("S3DataSource", {}).get("S3Uri", ""))]
        super().check_training_config({**training_config, "InputDataConfig": channels})


class ResumableTrainingOperator(SageMakerTrainingOperator):
    """``SageMakerTrainingOperator`` that re-attaches to its own job on a retry instead of starting a second.

    The provider's ``action_if_job_exists="timestamp"`` starts a new (paid) job on every retry, and ``"fail"``
    fails the retry. With a deterministic ``TrainingJobName`` per DAG run, this operator describes the job
    first: running -> wait for it (deferred); Completed -> done; Failed/Stopped -> fail with SageMaker's
    ``FailureReason``; absent -> create it. A failed job's reason is also raised after a deferred wait.
    """

    aws_hook_class = OwnBucketsSageMakerHook

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("check_if_job_exists", False)
        super().__init__(**kwargs)

    def _describe(self, name: str) -> dict[str, Any] | None:
        from tailor.aws_errors import describe_or_none

        return describe_or_none(lambda: self.hook.describe_training_job(name), "training job")

    def _raise_failed(self, description: dict[str, Any]) -> None:
        raise AirflowException(
            f"SageMaker training job {description['TrainingJobName']} {description['TrainingJobStatus']}: "
            f"{description.get('FailureReason', '(no reason given)')}. No endpoint was created; fix the cause "
            "and trigger a new run (this run's job name is taken)."
        )

    def execute(self, context: Any) -> dict:
        self.preprocess_config()
        name = self.config["TrainingJobName"]
        description = self._describe(name)
        if description is None:
            return super().execute(context)
        status = description["TrainingJobStatus"]
        self.log.info("training job %s already exists (%s): re-attaching instead of starting another", name, status)
        if status in FAILED:
            self._raise_failed(description)
        if status == "Completed":
            return self.serialize_result(name)
        self.defer(
            trigger=SageMakerTrigger(job_name=name, job_type="Training", waiter_delay=self.check_interval,
                                     waiter_max_attempts=self.max_attempts, aws_conn_id=self.aws_conn_id,
                                     region_name=self.region_name, verify=self.verify,
                                     botocore_config=self.botocore_config),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, dict]:
        description = self.hook.describe_training_job(self.config["TrainingJobName"])
        if description["TrainingJobStatus"] in FAILED:
            self._raise_failed(description)
        return super().execute_complete(context, event)


class ResumableModelOperator(SageMakerModelOperator):
    """``SageMakerModelOperator`` a retry can run again: reuses the model an earlier try created when it is the one
    asked for (same image, artifact, role, environment), replaces a different one under the name, else creates."""

    def execute(self, context: Any) -> dict:
        from tailor.endpoints import ensure_model

        self.preprocess_config()
        step = ensure_model(self.hook.conn, self.config)
        self.log.info("model %s: %s", self.config["ModelName"], step)
        return {"Model": serialize(self.hook.describe_model(self.config["ModelName"]))}


class ResumableEndpointOperator(SageMakerEndpointOperator):
    """``SageMakerEndpointOperator(operation="create")`` a retry can run again, for an endpoint this run owns (the
    challenger). The endpoint configuration is reused or replaced like a model; the endpoint is reused when it
    is (or becomes) InService on that configuration, waited for while Creating, and deleted and created again
    when an earlier try left it Failed or on another configuration. Fails with SageMaker's ``FailureReason``
    when the endpoint this try created fails. Waits in the worker (``check_interval``, ``max_ingestion_time``):
    ``deferrable`` is not supported."""

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("operation", "create") != "create" or kwargs.get("deferrable"):
            raise ValueError("ResumableEndpointOperator creates (or resumes) its own endpoint, without deferring")
        kwargs["deferrable"] = False
        super().__init__(**kwargs)

    def execute(self, context: Any) -> dict:
        from tailor.endpoints import EndpointError, Waiting, ensure_endpoint, ensure_endpoint_config, ensure_model

        self.preprocess_config()
        sagemaker = self.hook.conn
        if "Model" in self.config:
            self.log.info("model %s: %s", self.config["Model"]["ModelName"], ensure_model(sagemaker,
                                                                                       self.config["Model"]))
        config, endpoint = self.config["EndpointConfig"], self.config["Endpoint"]
        step = ensure_endpoint_config(sagemaker, config)
        self.log.info("endpoint configuration %s: %s", config["EndpointConfigName"], step)
        waiting = Waiting(poll=self.check_interval, timeout=self.max_ingestion_time, log=self.log.info)
        try:
            described = ensure_endpoint(sagemaker, endpoint["EndpointName"], endpoint["EndpointConfigName"], waiting,
                                        stale=step == "replace")
        except EndpointError as error:
            raise AirflowException(f"{error}. A retry of this task deletes it and creates it again; otherwise "
                                   "teardown_challenger deletes it.") from None
        return {"EndpointConfig": serialize(self.hook.describe_endpoint_config(config["EndpointConfigName"])),
                "Endpoint": serialize(dict(described))}
