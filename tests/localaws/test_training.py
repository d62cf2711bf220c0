"""The local training job runs in its own process (its ~2 GB go back to the OS when it ends)."""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import pytest

from localaws.models import smollm2_dir
from localaws.training import (
    DEFAULT_MAX_TRAINING_STEPS,
    TrainingFailed,
    evenly_spaced,
    fine_tune_in_subprocess,
    max_training_steps,
    trainable_layers,
    training_schedule,
)
from tests.conftest import SAMPLE_CATALOG


def test_fine_tune_runs_in_a_child_process_and_returns_its_metrics(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    channel = tmp_path / "training"
    channel.mkdir()
    (channel / "catalog.txt").write_bytes(Path(SAMPLE_CATALOG).read_bytes()[:3000])
    monkeypatch.setenv("LOCALAWS_TRAINABLE_LAYERS", "2")  # the local AWS's knob, never a hyperparameter
    lines: list[str] = []
    metrics = fine_tune_in_subprocess(smollm2_dir(), channel, {"epoch": "1", "max_input_length": "64"},
                                      tmp_path / "model", on_line=lines.append)
    assert metrics["train:steps"] >= 1 and metrics["train:loss"] < metrics["train:base_loss"]
    assert metrics["train:capped"] == 0.0 and metrics["train:planned_steps"] == metrics["train:steps"]
    assert (tmp_path / "model" / "model.safetensors").stat().st_size > 100_000_000
    assert any(line.startswith("epoch 1/1 done") for line in lines), lines  # progress streamed to the server log
    started = [line for line in lines if line.startswith("training process ")]
    assert started and started[0] != f"training process {os.getpid()} started"  # another process trained


def test_a_capped_job_logs_and_reports_its_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    channel = tmp_path / "training"
    channel.mkdir()
    (channel / "catalog.txt").write_bytes(Path(SAMPLE_CATALOG).read_bytes()[:3000])
    monkeypatch.setenv("LOCALAWS_MAX_TRAINING_STEPS", "2")  # the child process inherits the environment
    monkeypatch.setenv("LOCALAWS_TRAINABLE_LAYERS", "1")
    lines: list[str] = []
    metrics = fine_tune_in_subprocess(smollm2_dir(), channel, {"epoch": "3", "max_input_length": "64"},
                                      tmp_path / "model", on_line=lines.append)
    planned = int(metrics["train:planned_steps"])
    assert metrics["train:steps"] == 2 and metrics["train:capped"] == 1.0 and planned >= 6
    assert any(line.startswith(f"capped at 2 steps of {planned} ") for line in lines), lines

def test_a_failing_algorithm_reports_its_own_error(tmp_path: Path) -> None:
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "notes.csv").write_text("a,b\n")
    with pytest.raises(TrainingFailed) as err:
        fine_tune_in_subprocess(smollm2_dir(), tmp_path / "training", {"epoch": "1"}, tmp_path / "model",
                                on_line=lambda line: None)
    assert str(err.value) == "ValueError: domain adaptation needs .txt files in the training channel; found none"
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
    assert started.wait(300), "the training never logged its plan"  # generous: a loaded 2-core machine
    processes = list(training._RUNNING)
    training.stop_all()
    worker.join(30)
    assert not worker.is_alive() and "exited with -15" in outcome["failure"]
    assert processes and all(p.poll() is not None for p in processes) and not training._RUNNING


# --- the step cap (pure functions, no model) --------------------------------------------------------------------


def test_an_uncapped_schedule_is_whole_shuffled_epochs() -> None:
    steps, planned = training_schedule(10, 4, 3, 0, random.Random(1))
    assert planned == 9 and len(steps) == 9
    assert [len(s) for s in steps] == [4, 4, 2] * 3  # each epoch ends in its own partial batch, as before
    for epoch in range(3):
        assert sorted(i for s in steps[epoch * 3 : epoch * 3 + 3] for i in s) == list(range(10))
    assert training_schedule(10, 4, 3, 9, random.Random(1))[0] == steps  # a cap not reached changes nothing


def test_a_300_kb_catalog_is_capped_and_sampled_evenly_across_the_corpus() -> None:
    """~75k tokens / 256-token blocks = 293 blocks, 2 epochs of batch 4 (the local sizing): 148 steps -> 24."""
    blocks, products = 293, 15
    steps, planned = training_schedule(blocks, 4, 2, 24, random.Random(7))
    assert (len(steps), planned) == (24, 148)
    assert all(len(s) == 4 for s in steps)
    seen = [i for s in steps for i in s]
    assert len(seen) == len(set(seen)) == 96  # a partial pass: no block twice
    per_product = Counter(i * products // blocks for i in seen)  # products are consecutive spans of the stream
    assert sorted(per_product) == list(range(products))
    assert max(per_product.values()) - min(per_product.values()) <= 1
    assert min(seen) < blocks / 24 and max(seen) > blocks - blocks / 24  # the catalog's start and end both seen


def test_a_cap_above_one_pass_trains_whole_passes_then_an_even_sample() -> None:
    steps, planned = training_schedule(20, 4, 5, 8, random.Random(3))
    assert (len(steps), planned) == (8, 25)
    counts = Counter(i for s in steps for i in s)
    assert set(counts) == set(range(20))  # one whole pass ...
    assert sorted(i for i, c in counts.items() if c == 2) == evenly_spaced(12, 20)  # ... then 12 spread blocks
    assert sum(counts.values()) == 32


def test_a_cap_never_trains_more_epochs_than_asked() -> None:
    steps, planned = training_schedule(5, 4, 2, 3, random.Random(0))
    assert planned == 4 and len(steps) == 3
    assert Counter(i for s in steps for i in s) == dict.fromkeys(range(5), 2)


def test_evenly_spaced_indices() -> None:
    assert evenly_spaced(3, 10) == [1, 5, 8]
    assert evenly_spaced(10, 10) == list(range(10))
    assert evenly_spaced(12, 5) == list(range(5)) and evenly_spaced(0, 5) == []


def test_the_step_cap_comes_from_the_environment() -> None:
    assert max_training_steps({}) == DEFAULT_MAX_TRAINING_STEPS == 24
    assert max_training_steps({"LOCALAWS_MAX_TRAINING_STEPS": " 60 "}) == 60
    assert max_training_steps({"LOCALAWS_MAX_TRAINING_STEPS": "0"}) == 0  # no cap
    for bad in ("-1", "ten", "2.5"):
        with pytest.raises(ValueError, match="LOCALAWS_MAX_TRAINING_STEPS=.* integer >= 0"):
            max_training_steps({"LOCALAWS_MAX_TRAINING_STEPS": bad})


def test_micro_batched_gradients_equal_the_whole_batch_gradient() -> None:
    """Four rows of different lengths in passes of two give the gradient of one four-row pass (token-weighted)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from localaws.training import _batches, accumulate_gradients

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64))
    blocks = [list(range(1, 1 + n)) for n in (30, 9, 17, 4)]  # ragged: the passes pad differently from the whole

    def gradient(rows: int) -> tuple[float, torch.Tensor]:
        model.zero_grad()
        loss = accumulate_gradients(model, _batches(blocks, rows, pad=0))
        return loss, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    whole_loss, whole = gradient(4)
    micro_loss, micro = gradient(2)
    single_loss, single = gradient(1)
    assert micro_loss == pytest.approx(whole_loss, rel=1e-5) and single_loss == pytest.approx(whole_loss, rel=1e-5)
    assert torch.allclose(micro, whole, rtol=1e-4, atol=1e-6) and torch.allclose(single, whole, rtol=1e-4, atol=1e-6)
    # the weighting matters: halving each pass's mean loss (37 and 19 predicted tokens) is another gradient
    model.zero_grad()
    for ids, mask in _batches(blocks, 2, pad=0):
        (model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss / 2).backward()
    plain = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert not torch.allclose(plain, whole, rtol=1e-2, atol=1e-5)


def test_trainable_layers_is_the_local_aws_knob() -> None:
    assert trainable_layers({}) == 0  # all layers
    assert trainable_layers({"LOCALAWS_TRAINABLE_LAYERS": " 10 "}) == 10
    for bad in ("-1", "ten"):
        with pytest.raises(ValueError, match="LOCALAWS_TRAINABLE_LAYERS=.* integer >= 0"):
            trainable_layers({"LOCALAWS_TRAINABLE_LAYERS": bad})
