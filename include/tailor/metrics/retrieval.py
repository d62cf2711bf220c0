"""Retrieval metrics without a judge: did the Knowledge Base return the question's product, and how high.

A retrieved chunk is *relevant* when its ``product_name`` names the question's product under
:func:`tailor.catalog.name_key` (the rule QA sets are checked against the catalog with), so a difference of case,
spacing or an invisible character between the QA set and the catalog is no miss.

* ``retrieval_hit`` - a relevant chunk is among the retrieved ones;
* ``reciprocal_rank`` - 1 / the rank of the first relevant chunk (0 without one): averaged, the MRR;
* ``ndcg`` - nDCG@k with binary relevance: the DCG of the ranking (relevant chunks at ranks i contribute
  1 / log2(i + 1)) over the ideal DCG, the relevant chunks all first. The ideal counts the relevant chunks the
  ranking holds (the product's other chunks are not known to the evaluation), so nDCG rewards putting the
  product's chunks above other products' ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from tailor.catalog import name_key


def _relevance(product_name: str, retrieved: Iterable[Mapping[str, Any]]) -> list[bool]:
    wanted = name_key(product_name)
    return [isinstance(chunk.get("product_name"), str) and name_key(chunk["product_name"]) == wanted
            for chunk in retrieved]


def retrieval_hit(product_name: str, retrieved: Iterable[Mapping[str, Any]]) -> bool:
    """True if any retrieved chunk is of the question's product."""
    return any(_relevance(product_name, retrieved))


def reciprocal_rank(product_name: str, retrieved: Iterable[Mapping[str, Any]]) -> float:
    """1 / rank of the first chunk of the question's product (ranks from 1, in retrieval order); 0.0 if none."""
    return next((1.0 / rank for rank, hit in enumerate(_relevance(product_name, retrieved), start=1) if hit), 0.0)


def ndcg(product_name: str, retrieved: Iterable[Mapping[str, Any]], k: int | None = None) -> float:
    """nDCG@k with binary relevance (k: the first ``k`` chunks; None: all); 0.0 without a relevant chunk."""
    relevance = _relevance(product_name, retrieved)[:k]
    dcg = math.fsum(1 / math.log2(rank + 1) for rank, hit in enumerate(relevance, start=1) if hit)
    ideal = math.fsum(1 / math.log2(rank + 1) for rank in range(1, sum(relevance) + 1))
    return dcg / ideal if ideal else 0.0
