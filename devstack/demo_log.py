"""What ``make demo`` prints, and where everything else goes.

The DAGs run in this process (``dag.test()``), so Airflow's logs, the tasks' prints and whatever a library writes
to the terminal would all land there. :func:`capture` sends them to files instead: one per DAG run
(``out/logs/<dag_id>.log``), the rest to ``out/logs/demo.log`` (the local AWS writes ``out/logs/localaws.log``).
The terminal gets, through :class:`Console`, only what the demo says itself, plus, read from the log lines as they
pass:

- one line per task when it finishes (task id with its map label, state, duration), from the records
  ``dag.test()`` logs around each task (``[DAG TEST] starting ... / end task ...``);
- a progress line, at most every :data:`PROGRESS_EVERY_S`, for the long stages: generation (the
  ``<approach> batch <i>: <n> answers`` prints, out of the plan's ``<n> samples ... x [approaches]``), judging
  (the judge's ``judged <n> of <N> (<rate>/s, ETA <s> s)`` log records) and the Amazon provider's waiters (the
  training job: ``Training job not done yet: InProgress``);
- the comparison table a task printed (``tailor.summary.format_table``), kept for the end;
- for a failed task, its last :data:`TAIL_LINES` log lines and where its full log starts.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

#: Lines of a failed task's log shown in the terminal.
TAIL_LINES = 30
#: At most one progress line per stage this often (plus the last one, "N of N").
PROGRESS_EVERY_S = 60.0
#: The logger of ``dag.test()``'s own records (task boundaries).
DAG_TEST_LOGGER = "airflow.sdk.definitions.dag"

_PLAN = re.compile(r"(\d+) samples of dataset \S+ x \[(.*?)\] -> \d+ batches")
_BATCH = re.compile(r"^(\S+) batch \d+: (\d+) answers")
_JUDGED = re.compile(r"judged (\d+) of (\d+) \(([\d.]+)/s, ETA (\d+) s\)")
#: The Amazon provider's waiters while they poll (the training job, an endpoint): "Training job not done yet: ..."
_WAITING = re.compile(r"\]\s+(.+?) not done yet: (\w+)")
#: A log record's line (structlog's console format starts with an ISO timestamp), as opposed to a task's print.
_LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
#: Airflow's bookkeeping after every task (log groups, state update, XCom push): left out of a failed task's tail.
_BOOKKEEPING = re.compile(
    r"::(end)?group::|Task instance state updated|Pushing xcom|Updating RenderedTaskInstanceFields")
#: A traceback's last line ("botocore.exceptions.ReadTimeoutError: Read timeout on ...").
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout|Interrupt)\b")
#: A failed task's lines are cut to this width in the terminal (the file has them whole).
TAIL_WIDTH = 200


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the current directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class Console:
    """The terminal: every line the demo shows goes through here (and is counted)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lines = 0
        self._lock = threading.Lock()

    def print(self, text: str = "") -> None:
        with self._lock:
            for line in text.rstrip("\n").split("\n"):
                self.stream.write(line + "\n")
                self.lines += 1
            self.stream.flush()


@dataclass(frozen=True)
class TaskResult:
    """A finished task instance, as the terminal shows it."""

    task_id: str
    map_index: int = -1
    label: str | None = None  # the rendered map index ("rag #0")
    state: str = "?"
    seconds: float | None = None

    @property
    def name(self) -> str:
        if self.map_index < 0:
            return self.task_id
        return f"{self.task_id}[{self.label or self.map_index}]"

    def line(self) -> str:
        return f"  {self.name:<36} {self.state:<15} {duration(self.seconds):>9}"


def task_result(ti: Any) -> TaskResult:
    """A TaskResult from an Airflow task instance (scheduler or SDK side)."""
    state = getattr(ti.state, "value", ti.state)
    return TaskResult(ti.task_id, ti.map_index, getattr(ti, "rendered_map_index", None), str(state or "?"),
                      ti.duration)


class Progress:
    """Progress lines of the long stages, read from log lines; throttled to one per stage every ``every`` s."""

    def __init__(self, every: float = PROGRESS_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self.answers_total: int | None = None
        self.answers_done = 0
        self.generation_started: float | None = None
        self._last: dict[str, float] = {}
        self._waiting_since: dict[str, float] = {}

    def feed(self, line: str) -> str | None:
        """The progress line to show for this log line, if any."""
        if match := _PLAN.search(line):
            approaches = re.findall(r"'([^']*)'", match.group(2)) or match.group(2).split(",")
            self.answers_total = int(match.group(1)) * len(approaches)
            self.answers_done, self.generation_started = 0, self.clock()
            self._last.pop("generation", None)
            return None
        if match := _BATCH.match(line):
            now = self.clock()
            if self.generation_started is None:
                self.generation_started = now
            self.answers_done += int(match.group(2))
            total = self.answers_total
            finished = total is not None and self.answers_done >= total
            if not self._due("generation", now, finished):
                return None
            if total is None:
                return f"  ... generation: {self.answers_done} answers"
            elapsed = max(now - self.generation_started, 1e-9)
            rate = self.answers_done / elapsed
            eta = f", ETA {duration((total - self.answers_done) / rate)}" if not finished and rate > 0 else ""
            return f"  ... generation: {self.answers_done} of {total} answers ({rate:.2f}/s{eta})"
        if match := _JUDGED.search(line):
            done, total = int(match.group(1)), int(match.group(2))
            if not self._due("judging", self.clock(), done >= total):
                return None
            eta = f", ETA {duration(float(match.group(4)))}" if done < total else ""
            return f"  ... judging: {done} of {total} ({match.group(3)}/s{eta})"
        if match := _WAITING.search(line):
            now, what = self.clock(), match.group(1)
            since = self._waiting_since.setdefault(what, now)
            if now - since < self.every or not self._due(what, now, False):
                return None
            return f"  ... {what}: {match.group(2)} for {duration(now - since)}"
        return None

    def _due(self, stage: str, now: float, finished: bool) -> bool:
        last = self._last.get(stage)
        if finished or last is None or now - last >= self.every:
            self._last[stage] = now
            return True
        return False


class TableCatcher:
    """The comparison table a task printed (``format_table``): its header line, the dashes and the rows."""

    def __init__(self, header: Sequence[str]) -> None:
        self._header = re.compile(r"^\s*" + r"\s{2,}".join(re.escape(cell) for cell in header) + r"\s*$")
        self._rows: list[str] | None = None
        self.table: list[str] = []

    def feed(self, line: str) -> None:
        if self._header.match(line):
            self._rows = [line.rstrip()]
        elif self._rows is not None:
            # the table ends at a blank line, a log record, or a line wider than its dashes (no row is)
            if len(self._rows) == 1 and set(line.strip()) != {"-", " "}:  # not format_table's header after all
                self._rows = None
                return
            width = len(self._rows[1]) if len(self._rows) > 1 else len(line)
            if line.strip() and not _LOG_RECORD.match(line) and len(line.rstrip()) <= width:
                self._rows.append(line.rstrip())
            else:
                self._close()

    def _close(self) -> None:
        if self._rows is not None and len(self._rows) > 2:
            self.table = self._rows
        self._rows = None

    def result(self) -> list[str]:
        self._close()
        return self.table


def table_header() -> Sequence[str]:
    from tailor.summary import TABLE_HEADER

    return TABLE_HEADER


class RunLog:
    """One log file (a DAG run's, or demo.log): writes its lines, follows the task that runs, and shows task
    results, progress and failures on the console."""

    def __init__(self, path: Path, console: Console, progress: Progress | None = None,
                 table: TableCatcher | None = None, tail: int = TAIL_LINES) -> None:
        self.path = path
        self.console = console
        self.progress = progress
        self.table = table
        self.file = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 (closed by close())
        self.lines = 0
        self.task_first_line = 1  # where the running task's log starts
        self.tail: deque[str] = deque(maxlen=tail)
        self.reported: set[tuple[str, int]] = set()
        self.failed: list[TaskResult] = []

    def write_line(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()
        self.lines += 1
        if not _BOOKKEEPING.search(line):
            self.tail.append(line if len(line) <= TAIL_WIDTH else line[: TAIL_WIDTH - 3] + "...")
        if self.progress is not None and (shown_progress := self.progress.feed(line)):
            self.console.print(shown_progress)
        if self.table is not None:
            self.table.feed(line)

    def task_started(self, task_id: str, map_index: int) -> None:
        self.task_first_line = self.lines + 1
        self.tail.clear()

    def task_finished(self, result: TaskResult) -> None:
        self.reported.add((result.task_id, result.map_index))
        self.console.print(result.line())
        if result.state == "failed":
            self.failed.append(result)
            self.console.print(f"    last {len(self.tail)} lines of its log "
                               f"(full log: {shown(self.path)}, from line {self.task_first_line}):")
            self.console.print("\n".join("    | " + line for line in self.tail))
        elif result.state == "up_for_retry":
            error = next((line for line in reversed(self.tail) if _EXCEPTION.match(line)), None)
            self.console.print(f"    will retry{f' after {error}' if error else ''}; its log: {shown(self.path)}, "
                               f"from line {self.task_first_line}")

    def close(self) -> None:
        self.file.close()


class LineRouter(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` and the logging handlers' stream: splits what is written into lines for the
    current :class:`RunLog`."""

    def __init__(self, target: Callable[[], RunLog], fd: int | None = None) -> None:
        super().__init__()
        self._target = target
        self._fd = fd
        self._pending = ""
        self._lock = threading.RLock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        if self._fd is None:
            raise io.UnsupportedOperation("fileno")
        return self._fd

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            while "\n" in self._pending:
                line, self._pending = self._pending.split("\n", 1)
                self._target().write_line(line)
        return len(text)

    def flush(self) -> None:  # a partial line stays until its newline (print writes the text, then "\n")
        pass

    def drain(self) -> None:
        with self._lock:
            if self._pending:
                line, self._pending = self._pending, ""
                self._target().write_line(line)


class TaskBoundaries(logging.Handler):
    """On ``dag.test()``'s own records: a task starts, runs (the record carries its task instance), ends."""

    def __init__(self, target: Callable[[], RunLog]) -> None:
        super().__init__()
        self._target = target
        self._ti: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        message, args = str(record.msg), record.args if isinstance(record.args, tuple) else ()
        try:
            if message.startswith("[DAG TEST] starting task_id=") and len(args) == 2:
                self._ti = None
                self._target().task_started(str(args[0]), int(str(args[1])))
            elif message.startswith("[DAG TEST] running task") and args:
                self._ti = args[0]
            elif message.startswith("[DAG TEST] end task") and len(args) == 2:
                task_id, map_index = str(args[0]), int(str(args[1]))
                ti = self._ti
                if ti is not None and (ti.task_id, ti.map_index) == (task_id, map_index):
                    result = task_result(ti)
                else:
                    result = TaskResult(task_id, map_index)
                self._target().task_finished(result)
                self._ti = None
        except Exception:  # noqa: BLE001 (the demo's display must never break a DAG run)
            self.handleError(record)


class Capture:
    """Where output goes while :func:`capture` is active: the current DAG run's log, else demo.log."""

    def __init__(self, logs: Path, console: Console) -> None:
        self.logs = logs
        self.console = console
        self.demo = RunLog(logs / "demo.log", console)
        self.current = self.demo
        self.router = LineRouter(lambda: self.current)
        self.boundaries = TaskBoundaries(lambda: self.current)
        #: the streams that were the terminal before the capture (sys.stdout/stderr then, and the originals)
        self.terminal_streams: list[Any] = [sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__]

    def path_for(self, dag_id: str) -> Path:
        path, number = self.logs / f"{dag_id}.log", 1
        while path.exists():
            number += 1
            path = self.logs / f"{dag_id}-{number}.log"
        return path

    @contextmanager
    def dag_run(self, dag_id: str, table_header: Sequence[str] | None = None) -> Iterator[RunLog]:
        """Send everything to this DAG run's own log file while it runs."""
        self._attach()
        run = RunLog(self.path_for(dag_id), self.console, Progress(),
                     TableCatcher(table_header) if table_header else None)
        self.current = run
        try:
            yield run
        finally:
            self.router.drain()
            self.current = self.demo
            run.close()

    def _attach(self) -> None:
        """Our handler on dag.test()'s logger, and every root handler that writes to the terminal re-pointed to
        the router. Airflow configures logging when first imported (before or after :func:`capture` started), which
        drops the handlers of airflow.* loggers: import it before a DAG run."""
        dag_test = logging.getLogger(DAG_TEST_LOGGER)
        if self.boundaries not in dag_test.handlers:
            dag_test.addHandler(self.boundaries)
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler and any(handler.stream is s for s in self.terminal_streams):
                handler.setStream(self.router)


@contextmanager
def capture(logs: Path) -> Iterator[Capture]:
    """Route this process's output to ``logs``: Python's (sys.stdout/stderr, logging) line by line to the
    current log (:meth:`Capture.dag_run`, else demo.log), anything written straight to file descriptors 1 and 2
    (C extensions, child processes) to demo.log; the terminal is then only :attr:`Capture.console`. Everything
    is restored on exit."""
    logs.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    console = Console(open(os.dup(saved[1]), "w", encoding="utf-8", errors="replace", closefd=True))  # noqa: SIM115
    state = Capture(logs, console)
    stray = os.open(logs / "demo.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    old_streams = sys.stdout, sys.stderr
    old_handler_streams = [(h, h.stream) for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    try:
        for fd in (1, 2):
            os.dup2(stray, fd)
        state.router._fd = stray
        sys.stdout = sys.stderr = state.router
        yield state
    finally:
        state.router.drain()
        sys.stdout, sys.stderr = old_streams
        for handler, stream in old_handler_streams:
            handler.setStream(stream)
        for other in logging.getLogger().handlers:
            if isinstance(other, logging.StreamHandler) and other.stream is state.router:
                other.setStream(old_streams[0])
        logging.getLogger(DAG_TEST_LOGGER).removeHandler(state.boundaries)
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(stray)
        state.demo.close()
        console.stream.close()
