"""A throw-away PostgreSQL cluster started from the Debian server binaries, for the warehouse tests and benchmark.

No manual step on a fresh machine: the server binaries are found under /usr/lib/postgresql/<ver>/bin (or on PATH,
or in $TAILOR_PG_BIN); when missing and we are root, Debian's ``postgresql`` package is installed with apt-get.
``initdb`` refuses to run as root, so as root the cluster runs as the ``postgres`` user (a dedicated system user is
created when that does not exist). The server listens on a free 127.0.0.1 port only, with a temp data directory,
fsync off, and is stopped by its PID (:func:`throwaway_postgres` does it on exit, whatever happened).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "tailor"
PG_DATABASE = "postgres"
DEDICATED_USER = "tailor-pg"
HOW_TO_FIX = (
    "How to fix: install the PostgreSQL server binaries (Debian/Ubuntu: `apt-get update && apt-get install -y "
    "postgresql`, as root; devstack/postgres.py does that itself when it runs as root), or point $TAILOR_PG_BIN at a "
    "directory holding `initdb` and `postgres`. If they are installed, the error above (initdb output or server log) "
    "says what else went wrong."
)


@dataclass
class PostgresServer:
    """A running throw-away cluster."""

    port: int
    password: str
    pid: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"postgres://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{PG_DATABASE}"


class PostgresStartError(RuntimeError):
    pass


def _version(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in path.parent.name.split(".") if p.isdigit())


def find_pg_bin() -> Path | None:
    """The newest directory holding both ``initdb`` and ``postgres``."""
    candidates = [Path(os.environ["TAILOR_PG_BIN"])] if os.environ.get("TAILOR_PG_BIN") else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    return next((d for d in candidates if (d / "initdb").is_file() and (d / "postgres").is_file()), None)


def install_postgres() -> None:
    """``apt-get install -y postgresql`` (after ``apt-get update`` if the package lists are stale or empty)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PostgresStartError("PostgreSQL server binaries not found, and not root with apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "postgresql"]
    if subprocess.run(cmd, env=env, capture_output=True, text=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True, check=False)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise PostgresStartError(f"`{' '.join(cmd)}` failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def server_user() -> pwd.struct_passwd | None:
    """The non-root account to run the server as (None: run as ourselves, we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", DEDICATED_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", DEDICATED_USER],
                   check=True, capture_output=True)  # fmt: skip
    return pwd.getpwnam(DEDICATED_USER)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user(user: pwd.struct_passwd | None) -> dict:
    return {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _ready(port: int, password: str) -> bool:
    import psycopg

    try:
        psycopg.connect(host="127.0.0.1", port=port, user=PG_USER, password=password, dbname=PG_DATABASE,
                        connect_timeout=2).close()  # fmt: skip
        return True
    except psycopg.OperationalError:
        return False


def start_postgres(base: Path, timings: dict[str, float], procs: list[subprocess.Popen]) -> tuple[int, str]:
    """initdb + postgres; every server process started is appended to ``procs`` at once (the caller stops them)."""
    t0 = time.monotonic()
    pg_bin = find_pg_bin()
    if pg_bin is None:
        install_postgres()
        pg_bin = find_pg_bin()
        if pg_bin is None:
            raise PostgresStartError("installed `postgresql` but still found no initdb/postgres binaries")
    timings["find_or_install_s"] = time.monotonic() - t0
    user = server_user()
    password = secrets.token_hex(16)
    data, pwfile, log = base / "data", base / "pwfile", base / "postgres.log"
    pwfile.write_text(password + "\n")
    if user is not None:
        for path in (base, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
    t1 = time.monotonic()
    initdb = subprocess.run(
        [str(pg_bin / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
         "-E", "UTF8", "--locale=C", "--no-sync"],
        capture_output=True, text=True, cwd=base, **_as_user(user),
    )  # fmt: skip
    timings["initdb_s"] = time.monotonic() - t1
    if initdb.returncode != 0:
        raise PostgresStartError(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}\n{initdb.stderr}")
    for _attempt in range(3):  # another process may grab the free port between our probe and the server's bind
        t2, port = time.monotonic(), free_port()
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(pg_bin / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off"],
                stdout=out, stderr=subprocess.STDOUT, cwd=base, start_new_session=True, **_as_user(user),
            )  # fmt: skip
        procs.append(proc)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline and not _ready(port, password):
            time.sleep(0.1)
        if proc.poll() is None and _ready(port, password):
            timings["start_s"] = time.monotonic() - t2
            return port, password
        stop(proc)
        if "could not bind" not in log.read_text(errors="replace"):
            break
    raise PostgresStartError(f"postgres did not accept connections; log {log}:\n{log.read_text(errors='replace')}")


def stop(proc: subprocess.Popen) -> None:
    """Fast shutdown by PID (SIGINT), then SIGKILL to its process group if it does not exit within 30 s."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def throwaway_postgres(timings: dict[str, float] | None = None) -> Iterator[PostgresServer]:
    """Start a cluster in a temp directory; on exit stop every server process started by its PID and delete it.

    Raises :class:`PostgresStartError` (or the underlying error) when it cannot be started; see ``HOW_TO_FIX``.
    """
    timings = {} if timings is None else timings
    base = Path(tempfile.mkdtemp(prefix="tailor-pg-"))
    procs: list[subprocess.Popen] = []
    try:
        port, password = start_postgres(base, timings, procs)
        yield PostgresServer(port=port, password=password, pid=procs[-1].pid, timings=timings)
    finally:
        for proc in procs:  # by PID, even when the caller failed or was interrupted
            stop(proc)
        shutil.rmtree(base, ignore_errors=True)
