"""A real, small fine-tune standing in for a SageMaker JumpStart training job.

It reads the job's ``training`` channel exactly as JumpStart's Llama recipes do (domain adaptation: plain text
files; instruction tuning: ``*.jsonl`` records + ``template.json``) and fully fine-tunes the local
SmolLM2-135M-Instruct on 2 CPU cores. JumpStart's LoRA/FSDP/int8 knobs are accepted and ignored: at 135M
parameters a partial fine-tune (the top layers, embeddings frozen) is cheaper than the bookkeeping.
Hyperparameters honoured: ``epoch``, ``learning_rate``, ``instruction_tuned``, ``max_input_length``,
``per_device_train_batch_size``, ``seed``. How many top decoder layers train is the local AWS's own knob, never a
hyperparameter (AWS would refuse it): ``LOCALAWS_TRAINABLE_LAYERS`` (default 0 = all layers).

Bounded on 2 cores: ``LOCALAWS_MAX_TRAINING_STEPS`` (default :data:`DEFAULT_MAX_TRAINING_STEPS`, 0 = no cap) caps
the optimizer steps. A 300 KB catalog is ~320 blocks of 256 tokens: 5 epochs of batch 4 would be 400 steps, ~30
minutes at ~4.7 s a step. When capped, :func:`training_schedule` spends the budget (steps x batch size blocks) on
whole shuffled passes while they fit and on blocks sampled evenly across the corpus for the rest, so every part of
the catalog (every product) is still seen; the losses are measured on the blocks trained on. The cap is logged
("capped at N steps of M") and reported in the final metrics (``train:planned_steps``, ``train:capped``).
Measured with the demo's sizing on the 170 KB customer-shaped sample (180 blocks, 2 epochs = 90 steps): capped at
24, 113 s of training, loss 3.43 -> 2.47.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import subprocess
import sys
import tarfile
import time
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
#: Sized for the demo's local fine-tune: 24 steps x ~4.7 s (seq 256, top 10 layers) + two loss passes ~ 2.5 minutes.
DEFAULT_MAX_TRAINING_STEPS = 24
MAX_STEPS_ENV = "LOCALAWS_MAX_TRAINING_STEPS"
TRAINABLE_LAYERS_ENV = "LOCALAWS_TRAINABLE_LAYERS"


def _count_setting(name: str, default: int, meaning: str, environ: dict[str, str] | None) -> int:
    """A non-negative integer setting of the local AWS from the environment (``default`` when unset)."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{name}={raw!r} is not a {meaning}: use an integer >= 0")
    return value


def trainable_layers(environ: dict[str, str] | None = None) -> int:
    """The top decoder layers the local fine-tune trains, from ``LOCALAWS_TRAINABLE_LAYERS`` (0 or unset = all)."""
    return _count_setting(TRAINABLE_LAYERS_ENV, 0, "layer count (0 = all)", environ)


def max_training_steps(environ: dict[str, str] | None = None) -> int:
    """The local AWS's step cap from ``LOCALAWS_MAX_TRAINING_STEPS`` (0 = no cap)."""
    return _count_setting(MAX_STEPS_ENV, DEFAULT_MAX_TRAINING_STEPS, "step count (0 = no cap)", environ)


def evenly_spaced(count: int, total: int) -> list[int]:
    """``count`` distinct indices of ``range(total)`` spread evenly (the middle of each of ``count`` equal spans)."""
    count = max(0, min(count, total))
    return [(2 * i + 1) * total // (2 * count) for i in range(count)]


def training_schedule(n_blocks: int, batch_size: int, epochs: int, max_steps: int,
                      rng: random.Random) -> tuple[list[list[int]], int]:
    """The steps to train (each a list of block indices, at most ``batch_size``) and the uncapped step count.

    Uncapped (``max_steps`` 0 or enough): ``epochs`` shuffled passes, each ending in a partial batch, as before.
    Capped: ``max_steps x batch_size`` blocks - whole shuffled passes while they fit, then an evenly spaced
    sample of the corpus (shuffled), so a cap never drops the end of the catalog - cut into ``max_steps`` steps.
    """
    if n_blocks <= 0 or batch_size <= 0 or epochs <= 0:
        return [], 0
    planned = epochs * math.ceil(n_blocks / batch_size)

    def shuffled(indices: list[int]) -> list[int]:
        rng.shuffle(indices)
        return indices

    if max_steps <= 0 or planned <= max_steps:
        steps = []
        for _ in range(epochs):
            epoch = shuffled(list(range(n_blocks)))
            steps += [epoch[i : i + batch_size] for i in range(0, n_blocks, batch_size)]
        return steps, planned
    budget = max_steps * batch_size
    passes = min(budget // n_blocks, epochs)
    order = [i for _ in range(passes) for i in shuffled(list(range(n_blocks)))]
    order += shuffled(evenly_spaced(budget - len(order), n_blocks)) if passes < epochs else []
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)], planned


def _bool(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def training_texts(channel: Path, hyperparameters: dict[str, str]) -> list[str]:
    """The training examples of a channel folder, formatted as the JumpStart recipe would."""
    if not _bool(hyperparameters.get("instruction_tuned", "False")):
        texts = [p.read_text(encoding="utf-8") for p in sorted(channel.rglob("*")) if p.suffix in (".txt", ".md")]
        if not texts:
            raise ValueError("domain adaptation needs .txt files in the training channel; found none")
        return texts
    template_path = channel / "template.json"
    template = json.loads(template_path.read_text()) if template_path.exists() else {
        "prompt": "{instruction}\n\n{context}", "completion": "{response}"}
    texts = []
    for path in sorted(channel.rglob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            record = json.loads(line)
            try:
                texts.append(template["prompt"].format(**record) + template["completion"].format(**record))
            except KeyError as missing:
                raise ValueError(f"{path.name} line {number}: field {missing} required by template.json") from None
    if not texts:
        raise ValueError("instruction tuning needs *.jsonl records in the training channel; found none")
    return texts


def _blocks(tokenizer: Any, texts: list[str], length: int, instruction: bool) -> list[list[int]]:
    eos = tokenizer.eos_token_id
    if instruction:  # one example per block (truncated)
        return [tokenizer(t)["input_ids"][: length - 1] + [eos] for t in texts]
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text)["input_ids"] + [eos]
    return [stream[i : i + length] for i in range(0, len(stream), length) if len(stream[i : i + length]) > 8]


def _batches(blocks: list[list[int]], size: int, pad: int) -> list[tuple[Any, Any]]:
    import torch

    result = []
    for start in range(0, len(blocks), size):
        chunk = blocks[start : start + size]
        width = max(len(b) for b in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, block in enumerate(chunk):
            ids[row, : len(block)] = torch.tensor(block)
            mask[row, : len(block)] = 1
        result.append((ids, mask))
    return result


#: Rows per forward pass when measuring the loss (the peak memory of the job is set by its logits).
LOSS_BATCH_ROWS = 2


def mean_loss(model: Any, batches: list[tuple[Any, Any]]) -> float:
    """Token-weighted mean cross-entropy of the model on the batches."""
    import torch

    total, tokens = 0.0, 0
    with torch.inference_mode():
        for ids, mask in batches:
            labels = ids.masked_fill(mask == 0, -100)
            n = int((labels[:, 1:] != -100).sum())
            total += float(model(input_ids=ids, attention_mask=mask, labels=labels).loss) * n
            tokens += n
    return total / max(tokens, 1)


#: Rows per forward/backward pass in training: a step of ``per_device_train_batch_size`` rows accumulates the
#: gradients of passes this size (the logits and their gradients, not the weights, set the job's peak memory).
TRAIN_MICRO_ROWS = 2


def accumulate_gradients(model: Any, micro_batches: list[tuple[Any, Any]]) -> float:
    """Backpropagate one optimizer step's rows in micro-batches; returns the step's token-weighted mean loss.

    Each pass's mean loss is weighted by its share of the step's predicted tokens, so the accumulated gradient
    equals the gradient of the whole batch's token mean (what one pass over all rows would give).
    """
    counts = [int((mask[:, 1:] != 0).sum()) for _, mask in micro_batches]
    total_tokens, total = max(sum(counts), 1), 0.0
    for (ids, mask), n in zip(micro_batches, counts, strict=True):
        if n == 0:
            continue
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        (loss * (n / total_tokens)).backward()
        total += float(loss) * n
    return total / total_tokens


def _freeze(model: Any, trainable_layers: int) -> None:
    """Train only the top ``trainable_layers`` decoder layers (0 = all); the (tied) embeddings stay frozen."""
    model.get_input_embeddings().weight.requires_grad_(False)
    layers = model.model.layers
    if 0 < trainable_layers < len(layers):
        for layer in layers[: len(layers) - trainable_layers]:
            layer.requires_grad_(False)


def fine_tune(base_dir: Path, channel: Path, hyperparameters: dict[str, str], output: Path) -> dict[str, float]:
    """Train, save the model to ``output`` and return metrics (losses before/after on the training data)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seed = int(hyperparameters.get("seed", 42))
    rng = random.Random(seed)
    torch.manual_seed(seed)
    epochs = int(hyperparameters.get("epoch", 1))
    learning_rate = float(hyperparameters.get("learning_rate", 1e-4))
    length = int(hyperparameters.get("max_input_length", 256))
    batch_size = int(hyperparameters.get("per_device_train_batch_size", 4))
    instruction = _bool(hyperparameters.get("instruction_tuned", "False"))
    max_steps = max_training_steps()

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    _freeze(model, trainable_layers())
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    blocks = _blocks(tokenizer, training_texts(channel, hyperparameters), length, instruction)
    schedule, planned = training_schedule(len(blocks), batch_size, epochs, max_steps, rng)
    capped = len(schedule) < planned
    # losses on the blocks trained on: a capped job's loss passes stay as bounded as its training
    seen = sorted({i for batch in schedule for i in batch}) if capped else list(range(len(blocks)))
    # small batches: the loss pass materialises batch x length x 49k-vocabulary logits (~100 MB a row at 512)
    evaluation = _batches([blocks[i] for i in seen], LOSS_BATCH_ROWS, pad)
    base_loss = mean_loss(model.eval(), evaluation)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    log.info("training: %d blocks of <=%d tokens, %d epochs x %d steps, base loss %.3f",
             len(blocks), length, epochs, math.ceil(len(blocks) / batch_size), base_loss)
    if capped:
        log.info("capped at %d steps of %d (%s=%d): %d of %d blocks, sampled evenly across the corpus",
                 len(schedule), planned, MAX_STEPS_ENV, max_steps, len(seen), len(blocks))
    steps_per_epoch = max(1, math.ceil(len(blocks) / batch_size))
    progress_every = max(1, len(schedule) // 4)
    started, step = time.monotonic(), 0
    model.train()
    for indices in schedule:
        accumulate_gradients(model, _batches([blocks[i] for i in indices], TRAIN_MICRO_ROWS, pad))
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        if capped and (step % progress_every == 0 or step == len(schedule)):
            log.info("step %d of %d done (capped, %.0f s)", step, len(schedule), time.monotonic() - started)
        elif not capped and (step % steps_per_epoch == 0 or step == len(schedule)):
            log.info("epoch %d/%d done (step %d, %.0f s)", math.ceil(step / steps_per_epoch), epochs, step,
                     time.monotonic() - started)
    final_loss = mean_loss(model.eval(), evaluation)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return {"train:base_loss": base_loss, "train:loss": final_loss, "train:steps": float(step),
            "train:planned_steps": float(planned), "train:capped": float(capped),
            "train:seconds": time.monotonic() - started}


def pack(model_dir: Path, archive: Path) -> None:
    """``model.tar.gz`` with the model files at the archive's root, as SageMaker expects."""
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:  # weights barely compress; speed wins
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)


#: Training processes running now; :func:`stop_all` ends them when the server stops.
_RUNNING: set[subprocess.Popen[str]] = set()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the server dies (Linux), so no training outlives it."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc: stop_all() still covers an orderly stop
        pass


def stop_all(timeout: float = 10.0) -> None:
    """Terminate every running training process (the jobs end Failed, as a stopped container would)."""
    for process in list(_RUNNING):
        process.terminate()
    for process in list(_RUNNING):
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()


class TrainingFailed(RuntimeError):
    """The training process failed; the message is its failure (SageMaker's ``/opt/ml/output/failure``)."""


def fine_tune_in_subprocess(base_dir: Path, channel: Path, hyperparameters: dict[str, str], output: Path,
                            on_line: Any = log.info) -> dict[str, float]:
    """:func:`fine_tune` in its own Python process, as a SageMaker job runs in its own container.

    The process's memory (weights, gradients, AdamW state: ~2 GB for the 135M model) goes back to the OS
    when it exits, instead of staying in the server's glibc arenas for the rest of the bake-off. Its log
    lines are handed to ``on_line`` as they come; a failure raises :class:`TrainingFailed` with the process's
    failure text (``ValueError: ...``), or its last lines if it died without writing one.
    """
    metrics_file = output.parent / f"{output.name}.metrics.json"
    failure_file = output.parent / f"{output.name}.failure"
    from localaws.process import child_environment

    command = [sys.executable, "-m", "localaws.training", str(base_dir), str(channel), str(output),
               "--hyperparameters", json.dumps(hyperparameters), "--metrics-file", str(metrics_file),
               "--failure-file", str(failure_file)]
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(command, env=child_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", preexec_fn=_die_with_parent) as process:
        _RUNNING.add(process)
        try:
            assert process.stdout is not None
            for line in process.stdout:
                tail.append(line.rstrip())
                on_line(line.rstrip())
        finally:
            _RUNNING.discard(process)
    if process.returncode != 0:
        if failure_file.exists():
            raise TrainingFailed(failure_file.read_text())
        raise TrainingFailed(f"the training process exited with {process.returncode}: " + " | ".join(tail))
    return {k: float(v) for k, v in json.loads(metrics_file.read_text()).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localaws.training", description=__doc__.splitlines()[0])
    parser.add_argument("base_dir", type=Path, help="the base model (a transformers directory)")
    parser.add_argument("channel", type=Path, help="the job's downloaded training channel")
    parser.add_argument("output", type=Path, help="where to save the fine-tuned model")
    parser.add_argument("--hyperparameters", default="{}", help="the job's HyperParameters as a JSON object")
    parser.add_argument("--metrics-file", type=Path, required=True, help="write the final metrics here (JSON)")
    parser.add_argument("--failure-file", type=Path, help="on failure, write '<error type>: <message>' here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    log.info("training process %d started", os.getpid())
    try:
        metrics = fine_tune(args.base_dir, args.channel, json.loads(args.hyperparameters), args.output)
    except Exception as exc:
        log.exception("training failed")
        if args.failure_file:
            args.failure_file.write_text(f"{type(exc).__name__}: {exc}")
        return 1
    args.metrics_file.write_text(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
