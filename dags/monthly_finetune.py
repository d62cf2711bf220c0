"""
### Monthly fine-tuning: JumpStart Llama 3.1 8B Instruct on the latest catalog, champion/challenger

Training data comes from the catalog version the Knowledge Base holds (`catalog/current.json`):
**domain adaptation** (the catalog text, the default, as in the seed) or **instruction tuning** (the QA train
set as JSONL + template). The QA *test* set is never in a training channel (checked). A
`SageMakerTrainingOperator` job with a deterministic name per run (a retry re-attaches instead of paying for a
second job) -> model -> **challenger** endpoint (a retry reuses what an earlier try created) -> smoke test -> the
challenger and the current **champion** answer the same held-out questions (BERTScore F1) -> the champion
endpoint is pointed at the challenger's config only if it is not worse by more than `finetune.promote_margin`
(Param `promote` overrides). Promotion deletes the challenger first (a blue/green update runs two champion
fleets: the account needs 2 endpoint instances of the type, not 3), then checks what SageMaker did: a rolled-back
update fails `promote` and is recorded as `rolled_back`, never as promoted. The challenger endpoint is always
deleted (teardown, also on failure; verified gone, else the teardown task fails): only the champion keeps running
(ml.g5.12xlarge 24x7 is about $5,100/month: see the cost model). Lineage (job, data version, hyperparameters,
metrics, decision and its outcome) is written to `finetune/<job>/lineage.json`; `finetuned-model` announces a
confirmed promotion only. Empty Params use the config (`include/config/defaults.yaml`, section `finetune`).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, chain, dag
from airflow.timetables.trigger import CronTriggerTimetable

from tailor.config import parse_time_setting
from tailor_airflow.defaults import DEFAULT_ARGS, START_DATE
from tailor_airflow.finetune import (
    deployment_configs,
    evaluate_challenger,
    prepare_training_data,
    promote,
    smoke_test,
    teardown_challenger,
)
from tailor_airflow.sagemaker_operators import (
    ResumableEndpointOperator,
    ResumableModelOperator,
    ResumableTrainingOperator,
)

POLL_SECONDS: int = parse_time_setting("finetune", "poll_seconds")


@dag(
    dag_id="monthly_finetune",
    schedule=CronTriggerTimetable("0 3 1 * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={
        "method": Param("domain_adaptation", type="string", enum=["domain_adaptation", "instruction_tuning"],
                        description="Domain adaptation trains on the catalog text; instruction tuning on the "
                                    "QA train set (question -> answer pairs)."),
        "epochs": Param(None, type=["null", "integer"], minimum=1, maximum=20,
                        description="Training epochs. Empty: finetune.epochs from the config (5 on AWS)."),
        "learning_rate": Param(None, type=["null", "number"], exclusiveMinimum=0, maximum=0.01,
                               description="Learning rate. Empty: finetune.learning_rate from the config."),
        "instance_type": Param(None, type=["null", "string"], maxLength=64,
                               pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$",
                               description="Training instance type, e.g. ml.g5.12xlarge. Empty: the config's."),
        "promote": Param("if_better", type="string", enum=["if_better", "always", "never"],
                         description="Champion/challenger policy: promote only if not worse than the champion "
                                     "by more than the margin, always, or never (evaluate only)."),
    },
    tags=["fine-tuning", "sagemaker", "jumpstart"],
    doc_md=__doc__,
)
def monthly_finetune() -> None:
    # A @task call or an operator's .output is an XComArg that stands for the value at run time; mypy cannot match
    # it to the task functions' parameter types (apache/airflow#39514), so these references are typed Any.
    prepared: Any = prepare_training_data()
    train = ResumableTrainingOperator(
        task_id="train",
        config=prepared["training_config"],
        deferrable=True,
        check_interval=POLL_SECONDS,
        max_attempts=30 * 3600 // POLL_SECONDS,  # a JumpStart 8B fine-tune can take hours: wait up to 30 h
        print_log=False,
    )
    trained: Any = train.output
    configs: Any = deployment_configs(prepared["job_name"], trained)
    create_model = ResumableModelOperator(task_id="create_model", config=configs["model"])
    deploy = ResumableEndpointOperator(task_id="deploy_challenger", config=configs["endpoint"],
                                       check_interval=POLL_SECONDS)
    evaluation: Any = evaluate_challenger(configs["challenger_endpoint"], prepared["method"])
    decision = promote(prepared, configs, evaluation)
    teardown = teardown_challenger()
    smoke = smoke_test(configs["challenger_endpoint"], prepared["method"])
    if parse_time_setting("finetune", "require_approval"):  # off by default
        from datetime import timedelta

        from airflow.providers.standard.operators.hitl import ApprovalOperator

        approval = ApprovalOperator(
            task_id="approve_promotion",
            subject="Promote the fine-tuned challenger {{ ti.xcom_pull(task_ids='prepare_training_data', "
                    "key='job_name') }}?",
            body="Champion/challenger on the held-out questions: {{ ti.xcom_pull(task_ids='evaluate_challenger') "
                 "| tojson }}. Approve to run `promote` (which still applies the promote policy); Reject skips it "
                 "(the challenger endpoint is torn down either way).",
            defaults="Reject",  # no answer within the timeout: nothing is promoted
            response_timeout=timedelta(days=3),
        )
        chain(evaluation, approval, decision)
    chain(train, configs, create_model, deploy, smoke, evaluation, decision, teardown)
    # Runs even if training/deploy failed; fails (red, lineage "problems") if the challenger is not verified gone.
    # Not on_failure_fail_dagrun: it would make the teardown the only leaf and turn failed runs green.
    teardown.as_teardown(setups=prepared.operator)


monthly_finetune()
