"""Knowledge-base index: chunking, embeddings, lexical scoring and the ``Retrieve`` search.

Bedrock Knowledge Bases on OpenSearch Serverless offer SEMANTIC (vector) and HYBRID (vector + keyword) search;
this index does both. Chunking follows the data source's ``chunkingConfiguration`` (FIXED_SIZE with
``maxTokens`` / ``overlapPercentage``, or NONE); "tokens" are whitespace-separated words here.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_WORD = re.compile(r"[a-z0-9]+")
DEFAULT_MAX_TOKENS = 300
DEFAULT_OVERLAP_PERCENT = 20
#: Weight of the keyword score in HYBRID search (the rest is the vector score).
HYBRID_KEYWORD_WEIGHT = 0.5


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    text: str
    source_uri: str
    data_source_id: str
    metadata: dict[str, Any] = field(default_factory=dict)


def chunk_text(text: str, chunking: dict[str, Any] | None) -> list[str]:
    """Split ``text`` as Bedrock's chunking configuration says (FIXED_SIZE by default, or NONE)."""
    chunking = chunking or {}
    strategy = chunking.get("chunkingStrategy", "FIXED_SIZE")
    if strategy == "NONE":
        return [text] if text.strip() else []
    if strategy != "FIXED_SIZE":
        raise ValueError(f"chunkingStrategy {strategy!r} is not supported locally (use FIXED_SIZE or NONE)")
    fixed = chunking.get("fixedSizeChunkingConfiguration", {})
    max_tokens = int(fixed.get("maxTokens", DEFAULT_MAX_TOKENS))
    overlap = int(fixed.get("overlapPercentage", DEFAULT_OVERLAP_PERCENT))
    words = text.split()
    step = max(1, max_tokens - max_tokens * overlap // 100)
    chunks = []
    for start in range(0, len(words), step):
        chunks.append(" ".join(words[start : start + max_tokens]))
        if start + max_tokens >= len(words):
            break
    return chunks


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class _Bm25:
    """Okapi BM25 over a fixed list of documents."""

    def __init__(self, documents: list[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.terms = [Counter(tokenize(doc)) for doc in documents]
        self.lengths = [sum(t.values()) for t in self.terms]
        self.avg_length = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        frequency: Counter[str] = Counter()
        for terms in self.terms:
            frequency.update(terms.keys())
        n = len(documents)
        self.idf = {term: math.log(1 + (n - df + 0.5) / (df + 0.5)) for term, df in frequency.items()}

    def scores(self, query: str) -> list[float]:
        query_terms = tokenize(query)
        result = []
        for terms, length in zip(self.terms, self.lengths, strict=True):
            score = 0.0
            norm = self.k1 * (1 - self.b + self.b * length / (self.avg_length or 1))
            for term in query_terms:
                tf = terms.get(term, 0)
                if tf:
                    score += self.idf[term] * tf * (self.k1 + 1) / (tf + norm)
            result.append(score)
        return result


class KnowledgeIndex:
    """The searchable chunks of one knowledge base, replaced data source by data source on each ingestion."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_source: dict[str, tuple[list[Chunk], Any]] = {}
        self._all: list[Chunk] = []
        self._vectors: Any = None
        self._bm25 = _Bm25([])

    def replace_source(self, data_source_id: str, chunks: list[Chunk], vectors: Any) -> None:
        """Atomically swap in a data source's new chunks (queries meanwhile see the old ones)."""
        import torch

        with self._lock:
            self._by_source[data_source_id] = (chunks, vectors)
            self._all = [c for cs, _ in self._by_source.values() for c in cs]
            parts = [v for cs, v in self._by_source.values() if len(cs)]
            self._vectors = torch.cat(parts) if parts else None
            self._bm25 = _Bm25([c.text for c in self._all])

    def __len__(self) -> int:
        return len(self._all)

    def search(
        self, query: str, query_vector: Any, top_k: int, search_type: str = "HYBRID"
    ) -> list[tuple[Chunk, float]]:
        """Return the ``top_k`` best chunks with a score in [0, 1]."""
        with self._lock:
            chunks, vectors, bm25 = self._all, self._vectors, self._bm25
        if not chunks:
            return []
        semantic = [(float(s) + 1) / 2 for s in (vectors @ query_vector).tolist()]
        if search_type == "SEMANTIC":
            combined = semantic
        else:
            keyword = bm25.scores(query)
            top = max(keyword) or 1.0
            w = HYBRID_KEYWORD_WEIGHT
            combined = [w * k / top + (1 - w) * s for k, s in zip(keyword, semantic, strict=True)]
        ranked = sorted(range(len(chunks)), key=lambda i: combined[i], reverse=True)[:top_k]
        return [(chunks[i], round(combined[i], 6)) for i in ranked]
