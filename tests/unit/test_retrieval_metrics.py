"""MRR and nDCG@k against hand-computed values, with the same product-name rule as the hit rate."""

from __future__ import annotations

import math

import pytest

from tailor.metrics.retrieval import ndcg, reciprocal_rank, retrieval_hit

P = "Vortex Mixer VM-200"


def chunks(*names: str | None) -> list[dict]:
    return [{"text": "...", "product_name": n} for n in names]


def test_reciprocal_rank_is_one_over_the_first_relevant_rank() -> None:
    assert reciprocal_rank(P, chunks(P, "Other")) == 1.0
    assert reciprocal_rank(P, chunks("Other", None, "vortex  mixer vm-200")) == pytest.approx(1 / 3)
    assert reciprocal_rank(P, chunks("Other")) == 0.0 and reciprocal_rank(P, []) == 0.0


def test_ndcg_against_a_hand_computation() -> None:
    # relevant at ranks 2 and 3: DCG = 1/log2(3) + 1/log2(4); ideal (2 relevant first) = 1 + 1/log2(3)
    expected = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert ndcg(P, chunks("Other", P, P)) == pytest.approx(expected)
    assert ndcg(P, chunks(P, P, "Other")) == 1.0
    assert ndcg(P, chunks("Other", P), k=1) == 0.0 and ndcg(P, chunks("Other", P), k=2) == pytest.approx(
        1 / math.log2(3))
    assert ndcg(P, chunks("Other")) == 0.0


def test_the_hit_rate_keeps_its_meaning() -> None:
    assert retrieval_hit(P, chunks("Other", "VORTEX MIXER VM-200")) and not retrieval_hit(P, chunks("Other", None))
