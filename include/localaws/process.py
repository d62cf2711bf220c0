"""Run the local AWS as a child process (what ``make demo`` and the tests do)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: glibc malloc for a server whose request threads and model workers allocate large tensors: two arenas
#: instead of 8 per core (each request thread would otherwise get its own). The serving worker also trims the
#: freed memory after every batch (``localaws.serving.release_free_memory``).
MALLOC_TUNING = {"MALLOC_ARENA_MAX": "2"}


def child_environment() -> dict[str, str]:
    """This process's environment with include/ (where ``localaws`` lives) first on ``PYTHONPATH``: for the
    ``python -m localaws ...`` children (the server, a training job)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                                     os.environ.get("PYTHONPATH")])))


class LocalAWSProcess:
    """Start ``python -m localaws serve`` on a free port; stop it (by PID) on exit, even after errors."""

    def __init__(self, log_path: Path | None = None, startup_timeout: float = 60.0,
                 env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.env = dict(env or {})  # defaults for the server's own knobs (LOCALAWS_*); the caller's environment wins
        self.startup_timeout = startup_timeout
        self.endpoint_url = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalAWSProcess:
        ready = Path(tempfile.mkdtemp(prefix="localaws-")) / "ready.json"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = MALLOC_TUNING | self.env | child_environment()  # the caller's environment wins
        self._process = subprocess.Popen(
            [sys.executable, "-m", "localaws", "serve", "--ready-file", str(ready)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + self.startup_timeout
        while not ready.exists():
            if self._process.poll() is not None:
                raise RuntimeError(f"local AWS exited with code {self._process.returncode} (log: {self.log_path})")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"local AWS did not start within {self.startup_timeout:.0f} s")
            time.sleep(0.1)
        self.endpoint_url = json.loads(ready.read_text())["endpoint_url"]
        return self

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> LocalAWSProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
