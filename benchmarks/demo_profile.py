"""The profiler of ``make bench``'s bake-off: ``make demo`` timed and its memory sampled, into out/timings.json.

``python -m benchmarks.demo_profile [--catalog ... --qa ...]`` runs exactly the demo (``devstack.demo.main``, same
arguments, same output) with a :class:`Recorder` on its hooks: the wall time of each phase and DAG run, the
start/end/duration of every task instance (from the DagRun's task instances), the peak RSS of this process and
of the local AWS child (and of both together, sampled), and prints a one-line summary. ``benchmarks.bakeoff``
and ``benchmarks.realistic`` run it in a subprocess and read the file. ``TAILOR_DEMO_EXTRA_EVALUATION=N`` also
runs weekly_evaluation on the first N questions, before the full one, for the benchmark's scaling fit.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.demo import Observer
from devstack.stack import REPO

OUT = REPO / "out"
TIMINGS = OUT / "timings.json"
EXTRA_EVALUATION = "TAILOR_DEMO_EXTRA_EVALUATION"


def _rss_mb(pid: int | None = None, field: str = "VmRSS") -> float | None:
    """A process's resident set (VmRSS) or its peak (VmHWM) in MB, from /proc (None if unavailable)."""
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _is_training_job(pid: int) -> bool:
    """A local SageMaker training job's child process (``python -m localaws.training``)."""
    try:
        return b"localaws.training" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class Recorder(Observer):
    """Phase and DAG timings, task-instance durations and peak memory of the demo, for out/timings.json.

    A daemon thread samples every 0.5 s the RSS of this process plus all its descendants (the local AWS, the
    `airflow db migrate` child); the exact per-process peaks are VmHWM (this process: ru_maxrss), read for the
    local AWS just before it stops."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.data: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(), "phases": {},
                                     "dags": [], "cpu_count": os.cpu_count()}
        self.peak_total_mb = 0.0
        self.localaws_pid: int | None = None
        self.localaws_peak_mb: float | None = None
        self.step = "start"  # what runs now (a phase or a DAG run): the samples' label
        #: step -> {"together": peak MB, "localaws": peak MB}, sampled: which step grows the memory
        self.by_step: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True, name="rss-sampler").start()

    def _pids(self) -> list[int]:
        """This process and its descendants (children's children included), from /proc."""
        parents: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                parents.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(parents.get(pid, []))
        return found

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            try:
                rss = {pid: _rss_mb(pid) or 0.0 for pid in self._pids()}
            except OSError:
                continue
            total = sum(rss.values())
            self.peak_total_mb = max(self.peak_total_mb, total)
            peaks = self.by_step.setdefault(self.step, {"together": 0.0, "localaws": 0.0})
            peaks["together"] = max(peaks["together"], total)
            peaks["demo"] = max(peaks.get("demo", 0.0), rss.get(os.getpid(), 0.0))
            training = sum(mb for pid, mb in rss.items() if _is_training_job(pid))
            peaks["training_job"] = max(peaks.get("training_job", 0.0), training)
            if self.localaws_pid:
                self.localaws_peak_mb = _rss_mb(self.localaws_pid, "VmHWM") or self.localaws_peak_mb
                peaks["localaws"] = max(peaks["localaws"], _rss_mb(self.localaws_pid) or 0.0)

    def find_localaws(self) -> None:
        """The local AWS child's pid (the `python -m localaws serve` among our children)."""
        for pid in self._pids()[1:]:
            try:
                if b"localaws\x00serve" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    self.localaws_pid = pid
            except OSError:
                continue

    @contextmanager
    def labelled(self, step: str) -> Iterator[None]:
        """Label the memory samples taken meanwhile with ``step``."""
        before, self.step = self.step, step
        try:
            yield
        finally:
            self.step = before

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            with self.labelled(name):
                yield
        finally:
            self.data["phases"][name] = round(time.monotonic() - started, 2)

    def dag(self, name: str, run: Any, seconds: float, conf: dict[str, Any] | None) -> None:
        tasks = []
        for ti in sorted(run.get_task_instances(), key=lambda t: (t.start_date is None, t.start_date)):
            tasks.append({"task_id": ti.task_id, "map_index": ti.map_index, "label": ti.rendered_map_index,
                          "state": str(ti.state), "try_number": ti.try_number,
                          "start": ti.start_date.isoformat() if ti.start_date else None,
                          "end": ti.end_date.isoformat() if ti.end_date else None,
                          "duration_s": ti.duration})
        self.data["dags"].append({"dag_id": name, "run_id": run.run_id, "state": str(run.state),
                                  "conf": conf or {}, "wall_s": round(seconds, 2), "tasks": tasks})

    def write(self) -> dict[str, Any]:
        self._stop.set()
        if self.localaws_pid:  # still running here (read before the local AWS stops)
            self.localaws_peak_mb = _rss_mb(self.localaws_pid, "VmHWM") or self.localaws_peak_mb
        self.data |= {
            "total_s": round(time.monotonic() - self.started, 2),
            "peak_rss_mb": {"demo": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                            "localaws": round(self.localaws_peak_mb or 0),
                            "together_sampled": round(self.peak_total_mb)},
            "peak_rss_by_step_mb": {step: {k: round(v) for k, v in peaks.items()}
                                    for step, peaks in self.by_step.items()},
        }
        OUT.mkdir(exist_ok=True)
        TIMINGS.write_text(json.dumps(self.data, indent=1))
        return self.data

    def summary(self) -> str:
        dags = ", ".join(f"{d['dag_id']}{'@' + str(d['conf']['sample_limit']) if 'sample_limit' in d['conf'] else ''}"
                         f" {d['wall_s']:.0f} s" for d in self.data["dags"])
        rss = self.data["peak_rss_mb"]
        return (f"timings: {dags}; total {self.data['total_s']:.0f} s; peak RSS demo {rss['demo']} MB, local AWS "
                f"{rss['localaws']} MB, together {rss['together_sampled']} MB (sampled) -> {TIMINGS}")


def main(argv: list[str] | None = None) -> int:
    from devstack import demo

    recorder = Recorder()
    recorder.extra_evaluation = int(os.environ.get(EXTRA_EVALUATION) or 0)
    try:
        return demo.main(argv, observer=recorder)
    finally:
        recorder.write()
        print(recorder.summary(), flush=True)


if __name__ == "__main__":
    sys.exit(main())
