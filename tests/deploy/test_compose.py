"""docker-compose.yaml (+ docker-compose.aws.yaml) against the Compose Specification and what the DAGs need.

No Docker engine exists here, so nothing is `docker compose up`-ed. Instead:
- both files (and their merge) are validated against the Compose Specification JSON schema (vendored:
  compose-spec.json, from Docker Inc.'s docker-compose 1.29.2), and deliberately broken copies must fail;
- the structure the package needs is checked: LocalExecutor, the four Airflow 3 components + init, health checks,
  dependency conditions, mounts, connections (parsed by Airflow itself), parse-time TAILOR__* variables;
- the shell/Python the services run is executed as far as it can be without containers: the local AWS is started
  with the localaws service's own command line, the localaws-bootstrap script runs against it, the Airflow
  entrypoint wrapper loads what it wrote, and airflow-init's password file is read by Airflow's SimpleAuthManager.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from tests.deploy.compose_model import (
    AWS_FILE,
    BASE_FILE,
    REPO,
    InterpolationError,
    Override,
    active_services,
    bind_mounts,
    depends_on,
    interpolate,
    load,
    merge,
    strip_tags,
    tagged_paths,
)

HERE = Path(__file__).resolve().parent
SCHEMA_FILE = HERE / "compose-spec.json"

AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
AIRFLOW_SERVICES = {*AIRFLOW_COMPONENTS, "airflow-init"}
ONE_SHOTS = {"airflow-init", "localaws-bootstrap"}
OFFLINE_SERVICES = {"postgres", "warehouse", "localaws", "localaws-bootstrap", *AIRFLOW_SERVICES}
AWS_SERVICES = {"postgres", "warehouse", *AIRFLOW_SERVICES}
CODE_MOUNTS = {
    "/opt/airflow/dags": "./dags",
    "/opt/airflow/plugins": "./plugins",
    "/opt/airflow/include": "./include",
    "/opt/airflow/sql": "./sql",
}
#: What a real-account user exports (docs/aws.md); the override refuses to start without the required ones.
AWS_ENV = {
    "AWS_REGION": "eu-west-1",
    "TAILOR_BUCKET": "acme-tailor-bakeoff",
    "TAILOR_CATALOG_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/111122223333/tailor-catalog-events",
    "TAILOR_KNOWLEDGE_BASE_ID": "KBABCDEFGH",
    "TAILOR_DATA_SOURCE_ID": "DSABCDEFGH",
    "TAILOR_SAGEMAKER_ROLE_ARN": "arn:aws:iam::111122223333:role/tailor-sagemaker-execution",
}
#: Every TAILOR__* variable read at DAG parse time (dags/, plugins/), found by `parse_time_reads()`.
#: True = the DAGs misbehave without it in a real account (asset URIs, the SQS watcher); False = has a default.
PARSE_TIME_VARS = {
    "TAILOR__AWS__BUCKET": True,
    "TAILOR__AWS__CATALOG_QUEUE_URL": True,
    "TAILOR__AIRFLOW__RETRY_DELAY_SECONDS": False,
    "TAILOR__CATALOG__INCOMING_PREFIX": False,
    "TAILOR__CATALOG__VERSIONS_PREFIX": False,
    "TAILOR__CATALOG__SUFFIX": False,
    "TAILOR__EVALUATION__JUDGE_MODELS": False,
    "TAILOR__EVALUATION__ON_ASSET_UPDATES": False,
    "TAILOR__EVALUATION__JUDGE_CONTEXT_CHARS": False,
    "TAILOR__EVALUATION__MIN_JUDGES": False,
    "TAILOR__FINETUNE__POLL_SECONDS": False,
    "TAILOR__FINETUNE__ENDPOINT_TIMEOUT_SECONDS": False,
    "TAILOR__FINETUNE__REQUIRE_APPROVAL": False,
    "TAILOR__KNOWLEDGE_BASE__INGESTION_POLL_SECONDS": False,
    "TAILOR__KNOWLEDGE_BASE__INGESTION_TIMEOUT_MINUTES": False,
}
#: Settings with no usable default in a real account: `settings().require(...)` in the code, plus the SageMaker
#: execution role (defaults.yaml holds a placeholder account).
RUNTIME_REQUIRED = {"TAILOR__FINETUNE__ROLE_ARN"}


# ---------------------------------------------------------------------------------------------------------------
# The models under test


def _found(pattern: str, text: str, flags: int = 0) -> str:
    """Group 1 of the first match of ``pattern`` in ``text``; the test fails when there is none."""
    match = re.search(pattern, text, flags)
    assert match is not None, f"{pattern!r} not found"
    return match[1]


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def validator() -> jsonschema.Validator:
    return jsonschema.Draft201909Validator(schema())


def schema_errors(model: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(model)]


@cache
def _base_raw() -> dict[str, Any]:
    return load(BASE_FILE)


@cache
def _aws_raw() -> dict[str, Any]:
    return load(AWS_FILE)


def base_raw() -> dict[str, Any]:
    return copy.deepcopy(_base_raw())


def aws_raw() -> dict[str, Any]:
    return copy.deepcopy(_aws_raw())


def offline_model(env: dict[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yaml as `docker compose up` sees it with an empty environment (the defaults)."""
    return interpolate(base_raw(), env or {})


def aws_model(env: dict[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yaml merged with docker-compose.aws.yaml, each interpolated first, as Compose does."""
    env = AWS_ENV if env is None else env
    return merge(interpolate(base_raw(), env), interpolate(aws_raw(), env))


# ---------------------------------------------------------------------------------------------------------------
# Checks, written as problem finders so the tests can also prove that they catch broken files


def structure_problems(model: dict[str, Any], expected: set[str], profiles: tuple[str, ...] = ()) -> list[str]:
    problems: list[str] = []
    services = active_services(model, profiles)
    if missing := expected - set(services):
        problems.append(f"services missing: {sorted(missing)}")
    if extra := set(services) - expected:
        problems.append(f"unexpected services started: {sorted(extra)}")
    for name, svc in services.items():
        if name not in ONE_SHOTS:
            check = svc.get("healthcheck") or {}
            if not check.get("test") or check.get("disable") or check.get("test") == ["NONE"]:
                problems.append(f"{name}: a long-running service without a health check")
        elif svc.get("restart") in ("always", "unless-stopped"):
            problems.append(f"{name}: a one-shot service must not be restarted")
        for dep, condition in depends_on(svc).items():
            if dep not in services:
                problems.append(f"{name}: depends on {dep}, which is not started")
                continue
            if condition == "service_healthy" and not services[dep].get("healthcheck"):
                problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no health check")
            if condition == "service_completed_successfully" and dep not in ONE_SHOTS:
                problems.append(f"{name}: waits for {dep} to complete, but it never does")
            if condition == "service_started":
                problems.append(f"{name}: depends on {dep} without a condition (no readiness)")
    problems += _cycle_problems(services)
    for name in AIRFLOW_SERVICES & set(services):
        svc = services[name]
        env = svc.get("environment") or {}
        if not isinstance(env, dict):
            problems.append(f"{name}: environment must be a mapping (the merge rules tested here assume it)")
            continue
        if env.get("AIRFLOW__CORE__EXECUTOR") != "LocalExecutor":
            problems.append(f"{name}: executor is {env.get('AIRFLOW__CORE__EXECUTOR')!r}, not LocalExecutor")
        if any(key.startswith("AIRFLOW__CELERY__") for key in env):
            problems.append(f"{name}: Celery settings in a LocalExecutor stack")
        for conn in ("AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW_CONN_TAILOR_WAREHOUSE"):
            if not env.get(conn):
                problems.append(f"{name}: connection {conn} missing")
        paths = (env.get("PYTHONPATH") or "").split(":")
        for needed in ("/opt/airflow/include", "/opt/airflow/plugins"):
            if needed not in paths:
                problems.append(f"{name}: {needed} not on PYTHONPATH")
        mounts = bind_mounts(svc)
        for target, source in CODE_MOUNTS.items():
            if mounts.get(target, (None,))[0] != source:
                problems.append(f"{name}: {source} is not mounted at {target}")
            elif not mounts[target][1]:
                problems.append(f"{name}: {target} should be mounted read-only")
    for name, command in AIRFLOW_COMPONENTS.items():
        if name in services:
            if services[name].get("command") != command:
                problems.append(f"{name}: command {services[name].get('command')!r}, expected {command!r}")
            deps = depends_on(services[name])
            for dep, condition in (("postgres", "service_healthy"), ("warehouse", "service_healthy"),
                                   ("airflow-init", "service_completed_successfully")):
                if deps.get(dep) != condition:
                    problems.append(f"{name}: must depend on {dep} with condition {condition}")
    envs = {name: services[name].get("environment") for name in AIRFLOW_COMPONENTS if name in services}
    if len({json.dumps(e, sort_keys=True) for e in envs.values()}) > 1:
        problems.append("the Airflow components must share one environment (parse-time settings, JWT secret)")
    for name, svc in services.items():
        for port in svc.get("ports", []):
            if not str(port).startswith("127.0.0.1:"):
                problems.append(f"{name}: port {port} is published on every interface, not 127.0.0.1")
    for name in model.get("services", {}):
        if re.search(r"redis|celery|flower|worker", name):
            problems.append(f"{name}: a Celery-era service in a LocalExecutor stack")
    return problems


def _cycle_problems(services: dict[str, dict[str, Any]]) -> list[str]:
    done: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> list[str]:
        if name in stack:
            return [f"dependency cycle: {' -> '.join((*stack, name))}"]
        if name in done or name not in services:
            return []
        found = [p for dep in depends_on(services[name]) for p in visit(dep, (*stack, name))]
        done.add(name)
        return found

    return sorted({p for name in services for p in visit(name, ())})


_SECRET_KEY = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$")
_URL_PASSWORD = re.compile(r"://[^:/@]+:(?P<password>[^@]+)@")
_SUBSTITUTION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?-[^}]*)?\}$")
#: The local AWS accepts any key; devstack uses the same dummy pair. Not a secret.
DUMMY_LOCALAWS_CREDENTIALS = '"login": "localaws-airflow", "password": "localaws"'


def secret_problems(raw: dict[str, Any]) -> list[str]:
    """Secrets must come from ${VAR...} substitutions (local dev defaults allowed), never be literals."""
    problems = []
    sections = {"x-airflow-common": raw.get("x-airflow-common", {}), **raw.get("services", {}),
                **{k: {"environment": v} for k, v in raw.items() if k == "x-aws-env"}}
    for name, svc in sections.items():
        env = (svc or {}).get("environment") or {}
        for key, value in (env.items() if isinstance(env, dict) else []):
            if value is None:  # passed through from the caller's environment
                continue
            value = str(value)
            if _SECRET_KEY.search(key) and not key.endswith("_FILE") and not _SUBSTITUTION.match(value):
                problems.append(f"{name}: {key} is a literal, not a ${{VAR:-default}} substitution")
            masked = re.sub(r"\$\{[^}]*\}", "SUBSTITUTION", value)  # ${A:-b} may hold ':' itself
            for match in _URL_PASSWORD.finditer(masked):
                if match["password"] != "SUBSTITUTION":
                    problems.append(f"{name}: {key} has a literal password in its URL")
            if (key.startswith("AIRFLOW_CONN_") and value.lstrip().startswith("{") and '"password"' in value
                    and DUMMY_LOCALAWS_CREDENTIALS not in value):
                problems.append(f"{name}: {key} has a literal password")
    return problems


def parse_time_reads() -> set[str]:
    """TAILOR__* variables the DAG files and plugins read from the environment (parse-time settings)."""
    found = set()
    for path in [*(REPO / "dags").glob("*.py"), *(REPO / "plugins").rglob("*.py")]:
        text = path.read_text()
        found |= {f"TAILOR__{s.upper()}__{k.upper()}"
                  for s, k in re.findall(r'parse_time_setting\(\s*"(\w+)",\s*"(\w+)"', text)}
        found |= {f"TAILOR__{k}" for k in re.findall(r'os\.environ\.get\(\s*f?"(?:\{ENV_PREFIX\}|TAILOR__)(\w+)"',
                                                       text)}
        if re.search(r"\bbucket\(\)", text):
            found.add("TAILOR__AWS__BUCKET")
    return found


def required_setting_reads() -> set[str]:
    found = set()
    for path in [*(REPO / "dags").glob("*.py"), *(REPO / "plugins").rglob("*.py")]:
        found |= {f"TAILOR__{s.upper()}__{k.upper()}"
                  for s, k in re.findall(r'\.require\(\s*"(\w+)",\s*"(\w+)"', path.read_text())}
    return found | RUNTIME_REQUIRED


def airflow_connection(value: str, conn_id: str) -> Any:
    """Parse an AIRFLOW_CONN_* value the way Airflow does (JSON if it starts with '{', else a URI)."""
    from airflow.models.connection import Connection

    if value.lstrip().startswith("{"):
        return Connection.from_json(value, conn_id=conn_id)
    return Connection(conn_id=conn_id, uri=value)


# ---------------------------------------------------------------------------------------------------------------
# The schema itself


def test_vendored_schema_is_the_recorded_upstream_file() -> None:
    data = schema()
    comment = data["$comment"]
    for fact in ("docker-compose 1.29.2", "Docker, Inc.", "Apache License, Version 2.0",
                 "compose/config/compose_spec.json"):
        assert fact in comment
    assert (HERE / "compose-spec.LICENSE").read_text().lstrip().startswith("Apache License")
    recorded = _found(r"canonical JSON \(sorted keys, no spaces\): ([0-9a-f]{64})", comment)
    body = {k: v for k, v in data.items() if k != "$comment"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert hashlib.sha256(canonical).hexdigest() == recorded, "compose-spec.json was edited after vendoring"
    jsonschema.Draft201909Validator.check_schema(data)
    assert data["title"] == "Compose Specification"


# ---------------------------------------------------------------------------------------------------------------
# Schema validation


def test_compose_file_matches_the_schema_before_and_after_interpolation() -> None:
    assert schema_errors(base_raw()) == []
    assert schema_errors(offline_model()) == []


def test_aws_override_matches_the_schema_alone_and_merged() -> None:
    assert schema_errors(strip_tags(interpolate(aws_raw(), AWS_ENV))) == []
    assert schema_errors(aws_model()) == []


@pytest.mark.parametrize("break_it", [
    pytest.param(lambda m: m["services"]["airflow-scheduler"]["depends_on"]["postgres"].update(
        condition="service_ready"), id="unknown-depends-on-condition"),
    pytest.param(lambda m: m["services"]["postgres"]["healthcheck"].update(interval=10), id="interval-not-a-string"),
    pytest.param(lambda m: m["services"]["airflow-scheduler"].update(enviroment={"A": "b"}), id="misspelt-key"),
    pytest.param(lambda m: m.update(service={}), id="unknown-top-level-key"),
    pytest.param(lambda m: m["services"]["warehouse"].update(ports="127.0.0.1:5433:5432"), id="ports-not-a-list"),
    pytest.param(lambda m: m["services"]["airflow-scheduler"]["environment"].update(FLAG=True),
                 id="boolean-environment-value"),
])
def test_schema_rejects_a_broken_copy(break_it) -> None:
    model = offline_model()
    break_it(model)
    assert schema_errors(model), "the schema accepted a broken compose file"


# ---------------------------------------------------------------------------------------------------------------
# Structure


def test_offline_stack_structure() -> None:
    assert structure_problems(offline_model(), OFFLINE_SERVICES) == []


def test_aws_stack_structure() -> None:
    model = aws_model()
    assert structure_problems(model, AWS_SERVICES) == []
    assert set(model["services"]["localaws"]["profiles"]) == set(model["services"]["localaws-bootstrap"]["profiles"])


@pytest.mark.parametrize(("break_it", "expected"), [
    (lambda m: m["services"]["airflow-triggerer"].pop("healthcheck"), "airflow-triggerer: a long-running"),
    (lambda m: m["services"].pop("airflow-dag-processor"), "services missing: ['airflow-dag-processor']"),
    (lambda m: m["services"]["airflow-scheduler"]["environment"].update(AIRFLOW__CORE__EXECUTOR="CeleryExecutor"),
     "not LocalExecutor"),
    (lambda m: m["services"]["airflow-apiserver"]["volumes"].remove("./sql:/opt/airflow/sql:ro"),
     "./sql is not mounted"),
    (lambda m: m["services"]["airflow-scheduler"]["environment"].pop("AIRFLOW_CONN_TAILOR_WAREHOUSE"),
     "AIRFLOW_CONN_TAILOR_WAREHOUSE missing"),
    (lambda m: m["services"]["airflow-scheduler"]["depends_on"].pop("airflow-init"), "must depend on airflow-init"),
    (lambda m: m["services"]["localaws"].update(
        depends_on={"airflow-init": {"condition": "service_completed_successfully"}}), "dependency cycle"),
    (lambda m: m["services"]["localaws"].pop("healthcheck"), "localaws has no health check"),
    (lambda m: m["services"].update(redis={"image": "redis:7.2-bookworm"}), "redis: a Celery-era service"),
    (lambda m: m["services"]["airflow-apiserver"].update(ports=["8080:8080"]), "every interface"),
    (lambda m: m["services"]["airflow-triggerer"]["environment"].update(TAILOR__AWS__BUCKET="other"),
     "share one environment"),
])
def test_structure_checks_catch_a_broken_copy(break_it, expected: str) -> None:
    model = offline_model()
    break_it(model)
    problems = structure_problems(model, OFFLINE_SERVICES)
    assert any(expected in p for p in problems), problems


def test_dockerfile_matches_requirements_and_compose_targets() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", dockerfile, re.M)
    assert froms[0][0] == "apache/airflow:3.3.2-python3.11"
    pinned = _found(r"^apache-airflow==(\S+)", (REPO / "requirements.txt").read_text(), re.M)
    assert froms[0][0].split(":")[1].startswith(f"{pinned}-"), "image tag and requirements.txt pin disagree"
    assert re.search(r"pip install [^\n]*-r /requirements/requirements\.txt -c /requirements/constraints\.txt",
                     dockerfile)
    stages = {stage for _, stage in froms if stage}
    model = offline_model()
    targets = {svc["build"]["target"] for svc in model["services"].values() if isinstance(svc.get("build"), dict)}
    assert targets <= stages, f"compose builds targets the Dockerfile lacks: {targets - stages}"
    assert froms[-1][1] == "airflow", "plain `docker build .` must produce the production (airflow) image"
    pythonpath = _found(r"^ENV PYTHONPATH=(\S+)", dockerfile, re.M)
    assert pythonpath == model["services"]["airflow-scheduler"]["environment"]["PYTHONPATH"]


# ---------------------------------------------------------------------------------------------------------------
# Environment the DAGs need


def test_parse_time_variables_are_known() -> None:
    """A new parse-time TAILOR__ read must be added here, and thereby to the stack's checks below."""
    from tailor.config import parse_time_variables

    assert parse_time_reads() == set(PARSE_TIME_VARS) == set(parse_time_variables())  # each declared in tailor.config


def test_aws_mode_sets_every_required_tailor_variable() -> None:
    model = aws_model()
    required = {k for k, needed in PARSE_TIME_VARS.items() if needed} | required_setting_reads()
    assert {"TAILOR__KNOWLEDGE_BASE__KNOWLEDGE_BASE_ID", "TAILOR__KNOWLEDGE_BASE__DATA_SOURCE_ID"} <= required
    for name in AIRFLOW_SERVICES:
        env = model["services"][name]["environment"]
        assert required <= set(env), f"{name} lacks {required - set(env)}"
        assert env["TAILOR__AWS__BUCKET"] == AWS_ENV["TAILOR_BUCKET"]
        assert env["TAILOR__AWS__CATALOG_QUEUE_URL"] == AWS_ENV["TAILOR_CATALOG_QUEUE_URL"]
        assert env["TAILOR__KNOWLEDGE_BASE__KNOWLEDGE_BASE_ID"] == AWS_ENV["TAILOR_KNOWLEDGE_BASE_ID"]
        assert env["TAILOR__FINETUNE__ROLE_ARN"] == AWS_ENV["TAILOR_SAGEMAKER_ROLE_ARN"]
        assert env["TAILOR_LOCAL_ENV_FILE"] == "", "the offline sizing must not be loaded against a real account"
        assert not [k for k, v in env.items() if v and "localaws:4566" in str(v)], "a value still points at localaws"


@pytest.mark.parametrize("variable", ["TAILOR_BUCKET", "TAILOR_CATALOG_QUEUE_URL", "TAILOR_KNOWLEDGE_BASE_ID",
                                      "TAILOR_DATA_SOURCE_ID", "TAILOR_SAGEMAKER_ROLE_ARN"])
def test_aws_mode_refuses_to_start_without_a_required_id(variable: str) -> None:
    env = {k: v for k, v in AWS_ENV.items() if k != variable}
    with pytest.raises(InterpolationError, match=variable):
        aws_model(env)


def test_aws_mode_accepts_an_empty_queue_for_polling_only_accounts() -> None:
    model = aws_model({**AWS_ENV, "TAILOR_CATALOG_QUEUE_URL": ""})
    assert model["services"]["airflow-dag-processor"]["environment"]["TAILOR__AWS__CATALOG_QUEUE_URL"] == ""
    with pytest.raises(InterpolationError, match="TAILOR_BUCKET"):
        aws_model({**AWS_ENV, "TAILOR_BUCKET": ""})  # `:?` also refuses an empty bucket


def test_aws_override_only_uses_merge_rules_the_tests_implement() -> None:
    raw = aws_raw()
    assert tagged_paths(raw) == [(("services", "airflow-init", "depends_on"), "override")]
    base_services = base_raw()["services"]
    for name, svc in raw["services"].items():
        assert name in base_services, f"{name}: the override adds a service instead of changing one"
        for key, value in svc.items():
            if isinstance(value, list):
                assert key == "profiles" and "profiles" not in base_services[name], (name, key)
            else:
                assert isinstance(value, dict | Override), (name, key, "scalars are not overridden here")


def test_aws_connection_has_no_endpoint_and_no_keys() -> None:
    for name in AIRFLOW_SERVICES:
        env = aws_model()["services"][name]["environment"]
        conn = airflow_connection(env["AIRFLOW_CONN_AWS_DEFAULT"], "aws_default")
        assert conn.conn_type == "aws"
        assert conn.extra_dejson == {"region_name": AWS_ENV["AWS_REGION"]}
        assert not conn.login and not conn.password
        for passthrough in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            assert env[passthrough] is None, f"{passthrough} must pass through from the caller, never be set"


def test_offline_connections_point_at_the_stack_services() -> None:
    model = offline_model()
    services = model["services"]
    env = services["airflow-scheduler"]["environment"]
    aws = airflow_connection(env["AIRFLOW_CONN_AWS_DEFAULT"], "aws_default")
    assert aws.conn_type == "aws" and aws.extra_dejson["region_name"] == "us-east-1"
    endpoint = urlsplit(aws.extra_dejson["endpoint_url"])
    assert endpoint.hostname == "localaws"
    serve = services["localaws"]["entrypoint"]
    assert serve[serve.index("--port") + 1] == str(endpoint.port)
    warehouse = airflow_connection(env["AIRFLOW_CONN_TAILOR_WAREHOUSE"], "tailor_warehouse")
    assert warehouse.conn_type == "postgres", "LLMJudgeOperator accepts sqlite, postgres or redshift connections"
    wh_env = services["warehouse"]["environment"]
    assert (warehouse.host, warehouse.port) == ("warehouse", 5432)
    assert (warehouse.login, warehouse.password, warehouse.schema) == (
        wh_env["POSTGRES_USER"], wh_env["POSTGRES_PASSWORD"], wh_env["POSTGRES_DB"])
    metadata = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    pg_env = services["postgres"]["environment"]
    assert (metadata.hostname, metadata.username, metadata.password, metadata.path.lstrip("/")) == (
        "postgres", pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"])
    execution = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution.hostname == "airflow-apiserver" and execution.path == "/execution/"
    assert any(p.endswith(f":{execution.port}") for p in services["airflow-apiserver"]["ports"])
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 64, "HS512 wants a key of 64 bytes or more"


def test_airflow_settings_exist_in_airflow_3() -> None:
    """Every AIRFLOW__SECTION__KEY of the stack is an option of the installed Airflow (a typo is silently ignored)."""
    import airflow
    import yaml

    template = yaml.safe_load((Path(airflow.__file__).parent / "config_templates" / "config.yml").read_text())
    known = {(section, option) for section, spec in template.items() for option in spec.get("options", {})}
    for model in (offline_model(), aws_model()):
        for name in AIRFLOW_SERVICES:
            for key in model["services"][name]["environment"]:
                if key.startswith("AIRFLOW__"):
                    section, option = key.removeprefix("AIRFLOW__").lower().split("__", 1)
                    assert (section, option) in known, f"{name}: {key} is not an Airflow setting"
    assert ("core", "simple_auth_manager_passwords_fil") not in known  # the check can fail


def test_changing_a_password_variable_changes_both_ends() -> None:
    model = offline_model({"TAILOR_WAREHOUSE_PASSWORD": "s3cr3t", "AIRFLOW_DB_PASSWORD": "m3ta"})
    env = model["services"]["airflow-scheduler"]["environment"]
    assert airflow_connection(env["AIRFLOW_CONN_TAILOR_WAREHOUSE"], "w").password == "s3cr3t"
    assert model["services"]["warehouse"]["environment"]["POSTGRES_PASSWORD"] == "s3cr3t"
    assert urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).password == "m3ta"
    assert model["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "m3ta"


def test_no_literal_secrets() -> None:
    assert secret_problems(base_raw()) == []
    assert secret_problems(aws_raw()) == []


def test_secret_check_catches_a_literal_password() -> None:
    raw = base_raw()
    raw["services"]["warehouse"]["environment"]["POSTGRES_PASSWORD"] = "hunter2"
    raw["x-airflow-common"]["environment"]["AIRFLOW_CONN_TAILOR_WAREHOUSE"] = "postgres://tailor:hunter2@warehouse/t"
    problems = secret_problems(raw)
    assert any("POSTGRES_PASSWORD is a literal" in p for p in problems)
    assert any("literal password in its URL" in p for p in problems)


def test_interpolation_rejects_an_unescaped_dollar() -> None:
    """Shell variables in the scripts must be written $$VAR (Compose would reject or eat a single $)."""
    raw = base_raw()
    raw["services"]["airflow-init"]["command"][1] += '\necho "$@"\n'
    with pytest.raises(InterpolationError, match="invalid interpolation"):
        interpolate(raw, {})


# ---------------------------------------------------------------------------------------------------------------
# Running what the services run (without containers)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mounts:
    """Maps a service's container paths to host paths: bind mounts to the repo, named volumes to temp dirs."""

    def __init__(self, volumes: dict[str, Path]) -> None:
        self.volumes = volumes

    def for_service(self, svc: dict[str, Any]) -> dict[str, Path]:
        table = {}
        for target, (source, _) in bind_mounts(svc).items():
            table[target] = (REPO / source[2:]) if source.startswith("./") else self.volumes[source]
        return table

    def translate_path(self, svc: dict[str, Any], path: str) -> str:
        table = self.for_service(svc)
        for target in sorted(table, key=len, reverse=True):
            if path == target or path.startswith(target + "/"):
                return str(table[target]) + path[len(target):]
        # A folder that is not itself mounted but holds mounts (PYTHONPATH=/opt/airflow for /opt/airflow/devstack):
        parents = {str(host)[: -len(target) + len(path)] for target, host in table.items()
                   if target.startswith(path + "/") and str(host).endswith(target[len(path):])}
        assert len(parents) == 1, f"{path} is not mounted into the service"
        return parents.pop()

    def env(self, svc: dict[str, Any], hosts: dict[str, str]) -> dict[str, str]:
        env = {}
        for key, value in (svc.get("environment") or {}).items():
            if value is None:
                continue
            value = str(value)
            for container_host, real in hosts.items():
                value = value.replace(container_host, real)
            if value.startswith("/"):
                value = ":".join(self.translate_path(svc, part) for part in value.split(":"))
            env[key] = value
        return env


def _base_env() -> dict[str, str]:
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
    return env


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Mounts:
    names = offline_model()["volumes"]
    mounts = Mounts({name: tmp_path_factory.mktemp(name) for name in names})
    # The one shortcut: a stand-in for the converted local model, so the bootstrap does not spend ~20 s
    # converting SmolLM2 (localaws.models.smollm2_dir() returns a folder that holds model.safetensors).
    (mounts.volumes["localaws-cache"] / "smollm2-135m-instruct").mkdir()
    (mounts.volumes["localaws-cache"] / "smollm2-135m-instruct" / "model.safetensors").write_bytes(b"")
    return mounts


@pytest.fixture(scope="module")
def localaws_service(volumes: Mounts):
    """The localaws service's own command line, on 127.0.0.1 and a free port instead of 0.0.0.0:4566."""
    svc = offline_model()["services"]["localaws"]
    argv = list(svc["entrypoint"])
    assert argv[:4] == ["python", "-m", "localaws", "serve"]
    port = _free_port()
    argv[0] = sys.executable
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    env = {**_base_env(), **volumes.env(svc, {})}
    log = volumes.volumes["localaws-state"].parent / "localaws-service.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    health = svc["healthcheck"]["test"][-1].replace("localhost:4566", f"127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                body = json.loads(urllib.request.urlopen(health, timeout=5).read())
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"localaws did not become healthy: {log.read_text()[-2000:]}") from None
                time.sleep(0.3)
        assert body == {"status": "ok"}
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def bootstrapped(localaws_service: str, volumes: Mounts) -> dict[str, str]:
    """Run localaws-bootstrap's script exactly as written in the compose file, against the local AWS."""
    svc = offline_model()["services"]["localaws-bootstrap"]
    assert svc["entrypoint"] == ["/bin/bash", "-c"]
    assert depends_on(svc) == {"localaws": "service_healthy"}
    env = {**_base_env(), **volumes.env(svc, {"http://localaws:4566": localaws_service})}
    result = subprocess.run(["bash", "-c", svc["command"][0]], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    state = volumes.volumes["localaws-state"]
    return {"resources": json.loads((state / "resources.json").read_text()), "env_file": state / "tailor.env",
            "endpoint": localaws_service}


def _entrypoint_script(svc: dict[str, Any]) -> list[str]:
    argv = list(svc["entrypoint"])
    assert argv[:2] == ["/usr/bin/dumb-init", "--"], "keep the official image's init process"
    assert "exec /entrypoint " in argv[4]
    argv[4] = argv[4].replace("exec /entrypoint ", "exec printenv ")  # print the environment Airflow would get
    return argv[2:]


def _run_entrypoint(svc: dict[str, Any], env: dict[str, str], names: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([*_entrypoint_script(svc), *names], env=env, capture_output=True, text=True, timeout=30)


def test_bootstrap_creates_the_resources_and_writes_their_ids(bootstrapped: dict[str, Any]) -> None:
    import boto3

    resources = bootstrapped["resources"]
    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=bootstrapped["endpoint"], region_name="us-east-1",
                            aws_access_key_id="localaws", aws_secret_access_key="localaws")

    agent = client("bedrock-agent")
    kb = agent.get_knowledge_base(knowledgeBaseId=resources["knowledge_base_id"])["knowledgeBase"]
    assert kb["name"] == "tailor-product-catalog"
    source = agent.get_data_source(knowledgeBaseId=resources["knowledge_base_id"],
                                   dataSourceId=resources["data_source_id"])["dataSource"]
    assert source["dataSourceConfiguration"]["s3Configuration"]["inclusionPrefixes"] == ["kb-data/"]
    notification = client("s3").get_bucket_notification_configuration(Bucket="tailor-bakeoff")
    rules = {r["Name"].lower(): r["Value"] for r in
             notification["QueueConfigurations"][0]["Filter"]["Key"]["FilterRules"]}
    assert rules == {"prefix": "catalog/incoming/", "suffix": ".txt"}
    client("sqs").get_queue_attributes(QueueUrl=resources["queue_url"], AttributeNames=["QueueArn"])


def test_airflow_entrypoint_loads_the_bootstrap_ids(bootstrapped: dict[str, Any], volumes: Mounts) -> None:
    from devstack.stack import LOCAL_SCALE

    model = offline_model()
    resources = bootstrapped["resources"]
    required = {k for k, needed in PARSE_TIME_VARS.items() if needed} | required_setting_reads()
    assert "TAILOR__FINETUNE__ROLE_ARN" in LOCAL_SCALE  # no default: the local stack sets its own role
    for name in AIRFLOW_COMPONENTS:
        svc = model["services"][name]
        env = {**_base_env(), **volumes.env(svc, {})}
        names = sorted(required | set(LOCAL_SCALE) | {"TAILOR__METRICS__BERTSCORE_MODEL", "HF_HUB_OFFLINE"})
        result = _run_entrypoint(svc, env, names)
        assert result.returncode == 0, result.stderr
        seen = dict(zip(names, result.stdout.splitlines(), strict=True))
        assert seen["TAILOR__KNOWLEDGE_BASE__KNOWLEDGE_BASE_ID"] == resources["knowledge_base_id"]
        assert seen["TAILOR__KNOWLEDGE_BASE__DATA_SOURCE_ID"] == resources["data_source_id"]
        assert seen["TAILOR__AWS__CATALOG_QUEUE_URL"] == resources["queue_url"]
        assert seen["TAILOR__AWS__BUCKET"] == resources["bucket"] == "tailor-bakeoff"
        assert {k: seen[k] for k in LOCAL_SCALE} == LOCAL_SCALE  # quoting survives (spaces, commas, colons)
        model_dir = Path(seen["TAILOR__METRICS__BERTSCORE_MODEL"])
        assert model_dir.parent == volumes.volumes["localaws-cache"], "the model must be on the shared volume"
        assert bind_mounts(svc)["/opt/localaws/cache"] == ("localaws-cache", True)
        assert seen["HF_HUB_OFFLINE"] == "1"


def test_airflow_entrypoint_refuses_to_start_without_the_bootstrap(volumes: Mounts, tmp_path: Path) -> None:
    svc = offline_model()["services"]["airflow-scheduler"]
    env = {**_base_env(), **volumes.env(svc, {}), "TAILOR_LOCAL_ENV_FILE": str(tmp_path / "absent.env")}
    result = _run_entrypoint(svc, env, ["TAILOR__AWS__BUCKET"])
    assert result.returncode == 1 and "localaws-bootstrap" in result.stderr


def test_airflow_entrypoint_loads_nothing_local_against_a_real_account(bootstrapped: dict[str, Any],
                                                                       volumes: Mounts) -> None:
    """Even with a leftover tailor.env in the state volume, the AWS override's ids win."""
    assert bootstrapped["env_file"].exists()
    svc = aws_model()["services"]["airflow-scheduler"]
    env = {**_base_env(), **volumes.env(svc, {})}
    names = ["TAILOR__KNOWLEDGE_BASE__KNOWLEDGE_BASE_ID", "TAILOR__AWS__BUCKET"]
    result = _run_entrypoint(svc, env, names)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [AWS_ENV["TAILOR_KNOWLEDGE_BASE_ID"], AWS_ENV["TAILOR_BUCKET"]]
    result = _run_entrypoint(svc, env, ["TAILOR__FINETUNE__EPOCHS"])  # the offline sizing is not loaded
    assert result.returncode == 1 and result.stdout == ""


def test_airflow_init_writes_a_login_the_simple_auth_manager_accepts(volumes: Mounts, tmp_path: Path) -> None:
    model = offline_model({"_AIRFLOW_WWW_USER_PASSWORD": "pa ss\"word"})
    init = model["services"]["airflow-init"]
    script = init["command"][1]
    assert init["entrypoint"] == "/bin/bash" and init["command"][0] == "-c"
    assert "/entrypoint airflow db migrate" in script
    python = _found(r"<<'PY'\n(.*?)\nPY\n", script, re.S)
    env = {**_base_env(), **volumes.env(init, {})}
    result = subprocess.run([sys.executable, "-c", python], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    api = model["services"]["airflow-apiserver"]
    api_env = volumes.env(api, {})
    passwords_file = Path(api_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert passwords_file.parent == volumes.volumes["airflow-auth"]
    check = ("from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager as S\n"
             "S().init()\n"
             "import json; print(json.dumps([S.get_passwords(), [[u.username, u.role] for u in S.get_users()]]))")
    auth_env = {**_base_env(), "AIRFLOW_HOME": str(tmp_path),
                **{k: v for k, v in api_env.items() if k.startswith("AIRFLOW__CORE__")}}
    result = subprocess.run([sys.executable, "-c", check], env=auth_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    passwords, users = json.loads(result.stdout.strip().splitlines()[-1])
    assert passwords == {"airflow": "pa ss\"word"}, "SimpleAuthManager generated its own password instead"
    assert users == [["airflow", "admin"]]


def test_local_volumes_are_shared_where_the_services_expect_them() -> None:
    services = offline_model()["services"]
    boot_env = services["localaws-bootstrap"]["environment"]
    state, cache_dir = boot_env["LOCALAWS_STATE_DIR"], boot_env["LOCALAWS_CACHE_DIR"]
    assert bind_mounts(services["localaws-bootstrap"])[state] == ("localaws-state", False)
    assert bind_mounts(services["localaws-bootstrap"])[cache_dir] == ("localaws-cache", False)
    assert services["localaws"]["environment"]["LOCALAWS_CACHE_DIR"] == cache_dir
    assert bind_mounts(services["localaws"])[cache_dir] == ("localaws-cache", False)
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert Path(env["TAILOR_LOCAL_ENV_FILE"]).parent == Path(state)
        assert bind_mounts(services[name])[state] == ("localaws-state", True)
        auth = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).parent
        assert bind_mounts(services[name])[str(auth)] == ("airflow-auth", False)
