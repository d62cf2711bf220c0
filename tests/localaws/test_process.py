"""The local AWS child process's memory settings (BENCHMARKS.md, bake-off memory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from localaws import serving
from localaws.process import MALLOC_TUNING, LocalAWSProcess


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_the_server_runs_with_the_malloc_tuning_unless_the_caller_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalAWSProcess() as aws:
        assert aws._process is not None
        assert _environ(aws._process.pid)["MALLOC_ARENA_MAX"] == MALLOC_TUNING["MALLOC_ARENA_MAX"] == "2"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    with LocalAWSProcess() as aws:
        assert aws._process is not None and _environ(aws._process.pid)["MALLOC_ARENA_MAX"] == "4"


def test_free_memory_is_trimmed_on_glibc() -> None:
    assert serving._TRIM is not None  # Linux/glibc here: every served batch ends with malloc_trim(0)
    serving.release_free_memory()
