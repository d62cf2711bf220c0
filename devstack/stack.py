"""Start the local AWS, bootstrap it from our settings, and prepare a project-local Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
# Dummy credentials: the local AWS accepts any; real accounts use the connection's own (never in code).
LOCAL_KEY_ID = "localaws"
#: The Airflow connection's access key: the local AWS records the IAM authorizations of calls signed with it
#: (``localaws.calls.RECORDED_KEY_ID``), so the IAM tests see the DAGs' calls and not the tests' own.
AIRFLOW_KEY_ID = "localaws-airflow"


#: The same DAGs, sized for 2 CPU cores: a small instance type moto accepts, a short fine-tune of the top layers
#: (enough to cut the catalog loss by > 20 %), fast polling, fewer evaluation questions.
LOCAL_SCALE = {
    "TAILOR__FINETUNE__TRAINING_INSTANCE_TYPE": "ml.g4dn.xlarge",
    "TAILOR__FINETUNE__ENDPOINT_INSTANCE_TYPE": "ml.g4dn.xlarge",
    "TAILOR__FINETUNE__EPOCHS": "2",
    "TAILOR__FINETUNE__LEARNING_RATE": "0.0003",
    "TAILOR__FINETUNE__MAX_INPUT_LENGTH": "256",
    # The local AWS's own account (moto's 123456789012): a real deployment sets its execution role (no default).
    "TAILOR__FINETUNE__ROLE_ARN": "arn:aws:iam::123456789012:role/tailor-sagemaker-execution",
    "TAILOR__FINETUNE__POLL_SECONDS": "2",
    "TAILOR__FINETUNE__EVAL_SAMPLE_LIMIT": "5",
    "TAILOR__FINETUNE__MAX_NEW_TOKENS": "48",
    "TAILOR__METRICS__BERTSCORE_LAYERS": "8",
    # 120-word chunks instead of 300: top-3 context shrinks ~2.5x, which a 135M model prefills on 2 cores every
    # RAG/hybrid answer (measured: Retrieve top-1 product hit rate 100 % HYBRID, 95.6 % SEMANTIC, vs 100/93.3).
    "TAILOR__KNOWLEDGE_BASE__CHUNK_MAX_TOKENS": "120",
    "TAILOR__AIRFLOW__RETRY_DELAY_SECONDS": "1",
    "TAILOR__EVALUATION__MAX_TOKENS": "64",
    "TAILOR__EVALUATION__GOLDEN_LIMIT": "6",  # 1 golden answer of each kind per run: the calibration's cost
    "TAILOR__EVALUATION__JUDGE_CONTEXT_CHARS": "1200",
    # Two judge ids (both served by the local model, so their agreement is trivially perfect locally).
    "TAILOR__EVALUATION__JUDGE_MODELS": "us.anthropic.claude-haiku-4-5-20251001-v1:0,amazon.nova-pro-v1:0",
    "TAILOR__EVALUATION__REPORT_NOTE": (
        "Local run: a 135M-parameter model (SmolLM2) stands in for Bedrock, JumpStart and the judges, so these "
        "scores test the pipeline, not the models."),
}


#: JumpStart's hosting artifact of the base model (the demo's side-by-side answer): the local AWS serves any
#: ``s3://jumpstart-cache-prod-*`` model as its base model (demo/bench only; the DAGs never deploy the base model).
BASE_MODEL_URI = ("s3://jumpstart-cache-prod-us-east-1/meta-textgeneration/meta-textgeneration-llama-3-1-8b-instruct/"
                  "artifacts/inference-prepack/v2.0.0/")
#: The local AWS process's own knobs (never sent to AWS): the local fine-tune trains only the top 10 decoder
#: layers (``localaws.training``, 0 = all), enough to cut the catalog loss by > 20 % on 2 cores.
LOCALAWS_SCALE = {"LOCALAWS_TRAINABLE_LAYERS": "10"}


def airflow_env(airflow_home: Path) -> dict[str, str]:
    """Environment for a project-local Airflow 3 (set before ``import airflow``: its config is read then)."""
    paths = [str(REPO / "include"), str(REPO / "plugins"), str(REPO)]
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(paths + [p for p in [os.environ.get("PYTHONPATH")] if p]),
    }


def aws_connection_uri(endpoint_url: str, secret: str = LOCAL_KEY_ID) -> str:
    """``aws_default`` as JSON: the only thing that differs between the local AWS and a real account.

    The local AWS accepts any credentials; the test and live stacks pass a random ``secret`` so their tests can
    prove it never reaches a log."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": AIRFLOW_KEY_ID,
            "password": secret,
            "extra": {"region_name": REGION, "endpoint_url": endpoint_url},
        }
    )


def bootstrap_spec() -> dict[str, Any]:
    """What the local AWS must create, from our settings with the local sizing (names and chunking only)."""
    from tailor.config import load_settings

    cfg = load_settings(env={**os.environ, **LOCAL_SCALE})
    kb = cfg.knowledge_base
    return {
        "bucket": cfg.aws.bucket,
        "queue_name": "tailor-catalog-events",
        "notification_prefix": cfg.catalog.incoming_prefix,
        "notification_suffix": cfg.catalog.suffix,
        "knowledge_base_name": kb.name,
        "data_source_name": kb.data_source_name,
        "data_prefix": kb.data_prefix,
        "embedding_model_arn": kb.embedding_model_arn,
        "chunk_max_tokens": kb.chunk_max_tokens,
        "chunk_overlap_percent": kb.chunk_overlap_percent,
    }


def sqlite_connection_uri(path: Path) -> str:
    """An Airflow connection URI for a SQLite file (the path percent-encoded, as SqliteHook needs)."""
    from urllib.parse import quote

    return "sqlite://" + quote(str(path.resolve()), safe="")


@dataclass
class Stack:
    """A running local AWS with our resources, and the environment that points Airflow at it."""

    endpoint_url: str
    resources: dict[str, str]
    warehouse_path: Path = REPO / "out" / "warehouse.db"
    #: The secret access key of Airflow's ``aws_default`` (any value works locally).
    aws_secret: str = LOCAL_KEY_ID

    def env(self) -> dict[str, str]:
        from localaws.models import smollm2_dir

        return {
            "AIRFLOW_CONN_TAILOR_WAREHOUSE": sqlite_connection_uri(self.warehouse_path),
            "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_uri(self.endpoint_url, self.aws_secret),
            "TAILOR__AWS__BUCKET": self.resources["bucket"],
            "TAILOR__AWS__CATALOG_QUEUE_URL": self.resources["queue_url"],
            "TAILOR__KNOWLEDGE_BASE__KNOWLEDGE_BASE_ID": self.resources["knowledge_base_id"],
            "TAILOR__KNOWLEDGE_BASE__DATA_SOURCE_ID": self.resources["data_source_id"],
            "TAILOR__KNOWLEDGE_BASE__INGESTION_POLL_SECONDS": "1",
            **LOCAL_SCALE,
            "TAILOR__METRICS__BERTSCORE_MODEL": str(smollm2_dir()),
        }

    def _faults(self, method: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint_url}/_localaws/faults", method=method,
                                         data=json.dumps(spec).encode() if spec is not None else None)
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    def recorded_calls(self, clear: bool = False) -> list[dict[str, Any]]:
        """The IAM authorizations of the calls the Airflow connection made (``localaws.calls``)."""
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint_url}/_localaws/calls", method="DELETE" if clear else "GET")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["calls"]

    def arm_fault(self, operation: str, error: str, *, status: int = 400, count: int = 1,
                  message: str | None = None) -> None:
        """Make the next ``count`` calls of ``operation`` fail (see ``localaws.faults``)."""
        self._faults("POST", {"operation": operation, "error": error, "status": status, "count": count,
                              "message": message})

    def fault_state(self) -> dict[str, Any]:
        """``{"armed": {operation: fault}, "fired": {operation: calls failed}}`` since the last clear."""
        return self._faults("GET")

    def clear_faults(self) -> None:
        """Disarm every fault and reset the fired counters."""
        self._faults("DELETE")

    def client(self, service: str, **kwargs: Any) -> Any:
        import boto3

        return boto3.client(
            service,
            **{"region_name": REGION, **kwargs},
            endpoint_url=self.endpoint_url,
            aws_access_key_id=LOCAL_KEY_ID,
            aws_secret_access_key=LOCAL_KEY_ID,
        )


def bootstrap(endpoint_url: str, warehouse_path: Path | None = None) -> Stack:
    from localaws.bootstrap import bootstrap as create

    stack = Stack(endpoint_url, create(endpoint_url, bootstrap_spec()))
    if warehouse_path is not None:
        stack.warehouse_path = warehouse_path
    stack.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    return stack


def migrate_airflow_db(env: dict[str, str]) -> None:
    """``airflow db migrate`` for the project-local AIRFLOW_HOME (idempotent, ~3 s)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )


def run_dag(dag_id: str, conf: dict[str, Any] | None = None) -> Any:
    """Run one DAG with ``dag.test()`` in this process (Airflow must already be configured) -> DagRun."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag.dags[dag_id].test(run_conf=conf or {})
