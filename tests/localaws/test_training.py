"""The local training job runs in its own process (its ~2 GB go back to the OS when it ends)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localaws.models import smollm2_dir
from localaws.training import TrainingFailed, fine_tune_in_subprocess
from tests.conftest import SAMPLE_CATALOG


def test_fine_tune_runs_in_a_child_process_and_returns_its_metrics(tmp_path: Path) -> None:
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "catalog.txt").write_bytes(Path(SAMPLE_CATALOG).read_bytes()[:3000])
    lines: list[str] = []
    metrics = fine_tune_in_subprocess(smollm2_dir(), channel, {"epoch": "1", "max_input_length": "64",
                                                               "local_trainable_layers": "2"},
                                      tmp_path / "model", on_line=lines.append)
    assert metrics["train:steps"] >= 1 and metrics["train:loss"] < metrics["train:base_loss"]
    assert (tmp_path / "model" / "model.safetensors").stat().st_size > 100_000_000
    assert any(line.startswith("epoch 1/1 done") for line in lines), lines  # progress streamed to the server log
    started = [line for line in lines if line.startswith("training process ")]
    assert started and started[0] != f"training process {os.getpid()} started"  # another process trained


def test_a_failing_algorithm_reports_its_own_error(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.csv").write_text("a,b\n")
    with pytest.raises(TrainingFailed) as err:
        fine_tune_in_subprocess(smollm2_dir(), tmp_path / "train", {"epoch": "1"}, tmp_path / "model",
                                on_line=lambda line: None)
    assert str(err.value) == "ValueError: domain adaptation needs .txt files in the train channel; found none"
    assert not (tmp_path / "model").exists()


def test_stopping_the_server_ends_a_running_training(tmp_path: Path) -> None:
    import threading

    from localaws import training

    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "catalog.txt").write_bytes(Path(SAMPLE_CATALOG).read_bytes())
    started, outcome = threading.Event(), {}

    def run() -> None:
        try:
            fine_tune_in_subprocess(smollm2_dir(), channel, {"epoch": "50"}, tmp_path / "model",
                                    on_line=lambda line: started.set() if line.startswith("training:") else None)
        except TrainingFailed as failure:
            outcome["failure"] = str(failure)

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(120), "the training never logged its plan"
    processes = list(training._RUNNING)
    training.stop_all()
    worker.join(30)
    assert not worker.is_alive() and "exited with -15" in outcome["failure"]
    assert processes and all(p.poll() is not None for p in processes) and not training._RUNNING
