"""Retrieval metrics: did the Knowledge Base return a chunk of the product the question is about."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tailor.catalog import name_key


def retrieval_hit(product_name: str, retrieved: Iterable[Mapping[str, Any]]) -> bool:
    """True if any retrieved chunk's ``product_name`` names the question's product under
    :func:`tailor.catalog.name_key` (the rule QA sets are checked against the catalog with), so a difference
    of case, spacing or an invisible character between the QA set and the catalog is no miss."""
    wanted = name_key(product_name)
    return any(isinstance(chunk.get("product_name"), str) and name_key(chunk["product_name"]) == wanted
               for chunk in retrieved)
