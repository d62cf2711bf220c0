"""``make airflow``: a live Airflow 3 on this machine, no Docker: the same components as docker-compose.yaml.

Local AWS + ``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` (LocalExecutor, simple
auth manager) in a project-local AIRFLOW_HOME, sized for a 2-core laptop. The metadata DB is a throw-away
PostgreSQL (devstack/postgres.py; fresh each start), as in docker-compose.yaml: with four processes writing,
SQLite answers API calls with "database is locked" (we saw it), which a demanding user would not accept. Every process
is started in its own session and stopped by PID (SIGTERM, then SIGKILL), also when startup fails. The live
end-to-end test (tests/live/) drives the same stack through the REST API only.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.stack import LOCALAWS_SCALE, REPO, Stack, airflow_env, bootstrap, migrate_airflow_db

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
ADMIN_USER = "admin"
FINISHED = frozenset({"success", "failed"})
#: Sized for 2 cores: a few task processes at once, one parsing process, one API worker, slower re-parsing.
LAPTOP_TUNING = {
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    "AIRFLOW__CORE__PARALLELISM": "4",
    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "60",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
    "AIRFLOW__API__WORKERS": "1",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveAirflow:
    """A running live stack: where its API is, how to log in, and its processes (stopped by ``stop``)."""

    home: Path
    port: int = 0
    stack: Stack | None = None
    metadata_uri: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _exit: ExitStack = field(default_factory=ExitStack)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def password(self) -> str:
        return json.loads((self.home / "passwords.json").read_text())[ADMIN_USER]

    def log_path(self, component: str) -> Path:
        return self.home / "logs" / f"{component}.log"

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self, startup_timeout: float = 240.0) -> LiveAirflow:
        from localaws.process import LocalAWSProcess

        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        self.port = self.port or free_port()
        try:
            from devstack.postgres import throwaway_postgres

            metadata = self._exit.enter_context(throwaway_postgres())
            self.metadata_uri = metadata.uri.replace("postgres://", "postgresql+psycopg2://", 1)
            aws = self._exit.enter_context(LocalAWSProcess(log_path=self.home / "logs" / "localaws.log",
                                                                env=LOCALAWS_SCALE))
            self.stack = bootstrap(aws.endpoint_url, warehouse_path=self.home / "warehouse.db")
            self.stack.aws_secret = self._secret("aws_secret")  # distinctive: tests scan the logs for it
            env = self.environment()
            migrate_airflow_db(env)
            for component in COMPONENTS:
                self._spawn(component, env)
            self.wait_until_healthy(startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def environment(self) -> dict[str, str]:
        assert self.stack is not None
        passwords = self.home / "passwords.json"
        if not passwords.exists():  # our own password file: the simple auth manager reads it, never prints it
            passwords.write_text(json.dumps({ADMIN_USER: secrets.token_urlsafe(12)}))
            passwords.chmod(0o600)
        return {
            **os.environ,
            **airflow_env(self.home),
            **self.stack.env(),
            **LAPTOP_TUNING,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_uri,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            # one signing key shared by every component (tokens cross processes)
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt_secret"),
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            **self.extra_env,
        }

    def _secret(self, name: str) -> str:
        """A random secret kept in ``home/<name>`` (mode 600), created on first use."""
        path = self.home / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text()

    def _spawn(self, component: str, env: dict[str, str]) -> None:
        log = open(self.log_path(component), "ab")  # noqa: SIM115  (kept open for the child's lifetime)
        self._exit.callback(log.close)
        command = [sys.executable, "-m", "airflow", component]
        if component == "api-server":
            command += ["--port", str(self.port), "--host", "127.0.0.1"]
        self.processes[component] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                     start_new_session=True)

    def wait_until_healthy(self, timeout: float) -> None:
        """Until the API answers and the scheduler, triggerer and dag-processor report healthy."""
        deadline, last = time.monotonic() + timeout, "no answer yet"
        while time.monotonic() < deadline:
            for component, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"airflow {component} exited with code {process.returncode}; "
                                       f"see {self.log_path(component)}")
            try:
                health = self.request("GET", "/api/v2/monitor/health", auth=False)
                states = {name: health.get(name, {}).get("status")
                          for name in ("metadatabase", "scheduler", "triggerer", "dag_processor")}
                if all(state == "healthy" for state in states.values()):
                    return
                last = str(states)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                last = str(error)
            time.sleep(2)
        raise TimeoutError(f"the live Airflow was not healthy within {timeout:.0f} s ({last}); "
                           f"logs in {self.home / 'logs'}")

    def stop(self) -> None:
        """Stop every component by PID (its whole process group: task runners included), then local AWS."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        self._exit.close()

    def __enter__(self) -> LiveAirflow:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- REST API v2 -----------------------------------------------------------------------------------------
    def token(self) -> str:
        body = self.request("POST", "/auth/token", {"username": ADMIN_USER, "password": self.password}, auth=False)
        return str(body["access_token"])

    def request(self, method: str, path: str, payload: Any = None, *, auth: bool = True,
                token: str | None = None) -> Any:
        """One JSON call; HTTP errors raise ``ApiError`` carrying the status and Airflow's message."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {token or self.token()}"
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, error.read().decode(errors="replace"), f"{method} {path}") from None
        return json.loads(raw) if raw else None

    # --- the REST calls the live tests and the benchmark share -------------------------------------------------

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's latest 50 runs, newest first."""
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after&limit=50")["dag_runs"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 420.0, poll: float = 1.0) -> dict[str, Any]:
        """Poll the run until it succeeded or failed; ``TimeoutError`` names the logs to read otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in FINISHED:
                return run
            time.sleep(poll)
        raise TimeoutError(f"{dag_id} run {run_id} not finished within {timeout:.0f} s; logs in {self.home / 'logs'}")

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """``task_id[map_index]`` -> the task instance, for every task of the run."""
        tis = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")
        return {f"{ti['task_id']}[{ti['map_index']}]": ti for ti in tis["task_instances"]}


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str, call: str) -> None:
        super().__init__(f"{call} -> HTTP {status}: {body[:500]}")
        self.status, self.body = status, body


def main() -> int:
    live = LiveAirflow(home=REPO / ".airflow-live", port=int(os.environ.get("AIRFLOW_PORT", "8080")))
    print("starting local AWS + Airflow (api-server, scheduler, dag-processor, triggerer)...", flush=True)
    with live:
        print(f"\nAirflow UI: {live.url}  login: {ADMIN_USER} / password in {live.home / 'passwords.json'}")
        print(f"local AWS: {live.stack.endpoint_url if live.stack else '?'}; logs: {live.home / 'logs'}")
        print("DAGs start paused: unpause catalog_kb_sync, then drop a catalog into "
              "s3://tailor-bakeoff/catalog/incoming/ (see README). Ctrl-C stops everything.", flush=True)
        try:
            while all(p.poll() is None for p in live.processes.values()):
                time.sleep(1)
            print("an Airflow component exited; stopping the stack", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nstopping...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
