"""A real, small fine-tune standing in for a SageMaker JumpStart training job.

It reads the job's ``train`` channel exactly as JumpStart's Llama recipes do (domain adaptation: plain text
files; instruction tuning: ``*.jsonl`` records + ``template.json``) and fully fine-tunes the local
SmolLM2-135M-Instruct on 2 CPU cores. JumpStart's LoRA/FSDP/int8 knobs are accepted and ignored: at 135M
parameters a partial fine-tune (the top layers, embeddings frozen) is cheaper than the bookkeeping.
Hyperparameters honoured: ``epoch``, ``learning_rate``, ``instruction_tuned``, ``max_input_length``,
``per_device_train_batch_size``, ``seed``, and the local-only ``local_trainable_layers`` (0 = all).
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


def _bool(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def training_texts(channel: Path, hyperparameters: dict[str, str]) -> list[str]:
    """The training examples of a channel folder, formatted as the JumpStart recipe would."""
    if not _bool(hyperparameters.get("instruction_tuned", "False")):
        texts = [p.read_text(encoding="utf-8") for p in sorted(channel.rglob("*")) if p.suffix in (".txt", ".md")]
        if not texts:
            raise ValueError("domain adaptation needs .txt files in the train channel; found none")
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
        raise ValueError("instruction tuning needs *.jsonl records in the train channel; found none")
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
    random.seed(seed)
    torch.manual_seed(seed)
    epochs = int(hyperparameters.get("epoch", 1))
    learning_rate = float(hyperparameters.get("learning_rate", 1e-4))
    length = int(hyperparameters.get("max_input_length", 256))
    batch_size = int(hyperparameters.get("per_device_train_batch_size", 4))
    instruction = _bool(hyperparameters.get("instruction_tuned", "False"))

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    _freeze(model, int(hyperparameters.get("local_trainable_layers", 0)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    blocks = _blocks(tokenizer, training_texts(channel, hyperparameters), length, instruction)
    evaluation = _batches(blocks, 8, pad)
    base_loss = mean_loss(model.eval(), evaluation)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(blocks) / batch_size)
    log.info("training: %d blocks of <=%d tokens, %d epochs x %d steps, base loss %.3f",
             len(blocks), length, epochs, steps_per_epoch, base_loss)
    started, step = time.monotonic(), 0
    model.train()
    for epoch in range(epochs):
        random.shuffle(blocks)
        for ids, mask in _batches(blocks, batch_size, pad):
            loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
        log.info("epoch %d/%d done (step %d, %.0f s)", epoch + 1, epochs, step, time.monotonic() - started)
    final_loss = mean_loss(model.eval(), evaluation)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return {"train:base_loss": base_loss, "train:loss": final_loss, "train:steps": float(step),
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
    parser.add_argument("channel", type=Path, help="the job's downloaded train channel")
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
