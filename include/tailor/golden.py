"""The golden set: answers to the sample questions scored by people, to calibrate the LLM judges and see them drift.

Each item is one answer with a human score per judge criterion (0, 0.25, 0.5, 0.75 or 1 under the rubric of
docs/golden-set.md). :func:`calibration` compares a run's judgements of the set with those scores per judge and
criterion (Krippendorff's alpha, interval metric, with the human and the judge as the two coders of an item; and the
mean absolute error); :func:`drift` turns two calibrations into findings.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tailor.exceptions import TailorError

GOLDEN_PATH = Path(__file__).resolve().parent.parent / "data" / "golden" / "golden_set.json"
KINDS = ("good", "partly_right", "wrong_number", "hallucinated", "off_topic", "over_long")
CRITERIA = ("correctness", "completeness", "faithfulness", "no_hallucination")  # the keys of judge.RUBRICS
ALLOWED_SCORES = (0.0, 0.25, 0.5, 0.75, 1.0)
GOLDEN_APPROACH = "golden"  # the approach name golden items carry through judge_many
_TEXT_FIELDS = ("id", "kind", "product_name", "question", "reference", "answer", "note")
_FIELDS = frozenset((*_TEXT_FIELDS, "context", "human"))


class GoldenSetError(TailorError, ValueError):
    """The golden set file breaks a format rule (the message names the item and the field)."""


@dataclass(frozen=True)
class GoldenItem:
    """One human-scored answer: ``context`` is None for an approach that retrieves nothing (fine-tune)."""

    id: str
    kind: str
    product_name: str
    question: str
    reference: str
    context: str | None
    answer: str
    human: dict[str, float]
    note: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _item(raw: Any, position: int, source: str) -> GoldenItem:
    where = f"{source}: item {position}"
    if not isinstance(raw, Mapping):
        raise GoldenSetError(f"{where} is a {type(raw).__name__}, not an object with the fields {sorted(_FIELDS)}")
    if isinstance(raw.get("id"), str) and raw["id"].strip():
        where = f"{source}: item {position} ({raw['id']!r})"
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise GoldenSetError(f"{where}: unknown field(s) {unknown}; the fields are {sorted(_FIELDS)}")
    for name in _TEXT_FIELDS:
        value = raw.get(name)
        if not isinstance(value, str) or not value.strip():
            raise GoldenSetError(f"{where}: field {name!r} must be a non-empty text, got {value!r}")
    if raw["kind"] not in KINDS:
        raise GoldenSetError(f"{where}: field 'kind' is {raw['kind']!r}; known kinds: {', '.join(KINDS)}")
    if "context" not in raw:
        raise GoldenSetError(f"{where}: field 'context' is missing (null when the answer was given without context)")
    context = raw["context"]
    if context is not None and (not isinstance(context, str) or not context.strip()):
        raise GoldenSetError(f"{where}: field 'context' must be null or a non-empty text, got {context!r}")
    human = raw.get("human")
    if not isinstance(human, Mapping):
        raise GoldenSetError(f"{where}: field 'human' must be an object with a score for each of {list(CRITERIA)}")
    extra = sorted(set(human) - set(CRITERIA))
    if extra:
        raise GoldenSetError(f"{where}: field 'human' has unknown criteria {extra}; the criteria are {list(CRITERIA)}")
    scores: dict[str, float] = {}
    for criterion in CRITERIA:
        if criterion not in human:
            raise GoldenSetError(f"{where}: field 'human.{criterion}' is missing")
        value = human[criterion]
        if isinstance(value, bool) or not isinstance(value, int | float) or float(value) not in ALLOWED_SCORES:
            raise GoldenSetError(f"{where}: field 'human.{criterion}' is {value!r}; allowed scores: "
                                 f"{', '.join(f'{s:g}' for s in ALLOWED_SCORES)}")
        scores[criterion] = float(value)
    return GoldenItem(raw["id"], raw["kind"], raw["product_name"], raw["question"], raw["reference"], context,
                      raw["answer"], scores, raw["note"])


def parse_golden(data: bytes | str, source: str = "golden_set.json") -> list[GoldenItem]:
    """The items of a golden set file (a JSON list), validated: the first broken rule raises GoldenSetError."""
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise GoldenSetError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(raw, list) or not raw:
        raise GoldenSetError(f"{source}: the golden set must be a non-empty JSON list of items")
    items: list[GoldenItem] = []
    seen: dict[str, int] = {}
    for position, entry in enumerate(raw, start=1):
        found = _item(entry, position, source)
        if found.id in seen:
            raise GoldenSetError(f"{source}: item {position} ({found.id!r}): field 'id' repeats item {seen[found.id]}; "
                                 "ids must be unique")
        seen[found.id] = position
        items.append(found)
    return items


def load_golden(path: str | Path | None = None) -> list[GoldenItem]:
    """The golden set at ``path`` (default: the packaged include/data/golden/golden_set.json), validated."""
    path = Path(path) if path is not None else GOLDEN_PATH
    return parse_golden(path.read_bytes(), str(path))


def digest(items: Sequence[GoldenItem]) -> str:
    """A short fingerprint of the items (text and human scores): two calibrations over different sets differ here."""
    text = json.dumps([item.to_json() for item in items], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prompt_version(criteria: Sequence[str] = CRITERIA) -> str:
    """A short fingerprint of the judge prompt (system texts with and without context, tool and JSON forms)."""
    from tailor.metrics.judge import build_prompt

    systems = [build_prompt("q", "r", "a", context, criteria, use_tool=use_tool)[0]
               for context in ("c", None) for use_tool in (True, False)]
    return hashlib.sha256("\n".join(systems).encode()).hexdigest()[:16]


def balanced(items: Sequence[GoldenItem], limit: int) -> list[GoldenItem]:
    """At most ``limit`` items (0: all), the same number of each kind (the first of each, in file order), so a
    smaller calibration still spans good, partly right, wrong, hallucinated, off-topic and over-long answers."""
    if limit < 0:
        raise GoldenSetError(f"golden_limit must be >= 0 (0: every item), got {limit}")
    if not limit or limit >= len(items):
        return list(items)
    per_kind = -(-limit // len(KINDS))
    picked = [item for kind in KINDS for item in [i for i in items if i.kind == kind][:per_kind]]
    return sorted(picked, key=items.index)[:limit]


def judge_items(items: Sequence[GoldenItem]) -> list[dict[str, Any]]:
    """The items in the form :func:`tailor.metrics.judge.judge_many` takes (approach ``golden``, sample id = item
    id): the judges see a golden answer exactly as they see an approach's answer."""
    return [{"approach": GOLDEN_APPROACH, "sample_id": item.id, "question": item.question,
             "reference": item.reference, "answer": item.answer, "context": item.context} for item in items]


def judgements_by_judge(judged: Sequence[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{judge model id: {item id: Judgement}}`` from :func:`judge_many`'s ``("golden/<item id>", Judgement)``
    pairs, ready for :func:`calibration`; pairs of other approaches are ignored."""
    found: dict[str, dict[str, Any]] = {}
    for key, judgement in judged:
        approach, _, item_id = key.partition("/")
        if approach == GOLDEN_APPROACH and item_id:
            found.setdefault(judgement.judge_model, {})[item_id] = judgement
    return found


def _scores(judgement: Any) -> Mapping[str, Any]:
    """The score mapping of a Judgement, of its JSON form, or a plain ``{criterion: score}`` mapping."""
    if hasattr(judgement, "scores"):
        return judgement.scores or {}
    if isinstance(judgement, Mapping):
        inner = judgement.get("scores")
        return inner if isinstance(inner, Mapping) else judgement
    return {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _agreement(pairs: Sequence[tuple[float, float | None]]) -> dict[str, Any]:
    from tailor.metrics.agreement import krippendorff_interval

    scored = [(human, judge) for human, judge in pairs if judge is not None]
    mae = math.fsum(abs(human - judge) for human, judge in scored) / len(scored) if scored else None
    return {"alpha": krippendorff_interval(pairs), "mae": mae, "n": len(scored)}


def calibration(items: Sequence[GoldenItem], judgements_by_judge: Mapping[str, Mapping[str, Any]], *,
                prompt: str | None = None) -> dict[str, Any]:
    """Agreement of each judge with the human scores, per criterion and ``overall``.

    ``judgements_by_judge`` is ``{judge model id: {item id: Judgement | its JSON | {criterion: score}}}``. Each item
    is one unit with two coders, the human and the judge (Krippendorff's alpha, interval metric); a missing
    judgement or a None (or non-numeric) score is missing, never a 0, so that item drops out of that criterion.
    ``overall`` compares, per item, the judge's mean over the criteria it scored with the human mean over the same
    criteria. ``mae`` is the mean absolute error and ``n`` the number of items the judge scored. ``prompt`` is the
    judge prompt's version (default: :func:`prompt_version`); :func:`drift` compares runs only when it matches.
    """
    by_id = {item.id: item for item in items}
    prompt = prompt if prompt is not None else prompt_version()
    judges: dict[str, Any] = {}
    for judge, judged in judgements_by_judge.items():
        unknown = sorted(set(judged) - set(by_id))
        if unknown:
            raise GoldenSetError(f"judge {judge!r} scored item(s) not in the golden set: {unknown[:5]}")
        per_criterion: dict[str, list[tuple[float, float | None]]] = {c: [] for c in CRITERIA}
        overall: list[tuple[float, float | None]] = []
        for item in items:
            given = _scores(judged.get(item.id))
            scores = {c: _number(given.get(c)) for c in CRITERIA}
            for criterion in CRITERIA:
                per_criterion[criterion].append((item.human[criterion], scores[criterion]))
            present = {c: score for c, score in scores.items() if score is not None}
            if present:
                overall.append((math.fsum(item.human[c] for c in present) / len(present),
                                math.fsum(present.values()) / len(present)))
            else:
                overall.append((math.fsum(item.human.values()) / len(CRITERIA), None))
        judges[judge] = {"prompt_version": prompt, "overall": _agreement(overall),
                         "criteria": {c: _agreement(pairs) for c, pairs in per_criterion.items()}}
    return {"golden_items": len(items), "golden_digest": digest(items), "prompt_version": prompt, "judges": judges}


def calibration_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``eval_judge_calibration`` rows of a :func:`calibration` result: per judge, every criterion and overall."""
    return [{"judge_model": judge, "criterion": criterion, "prompt_version": found["prompt_version"],
             "golden_digest": result["golden_digest"], **agreement}
            for judge, found in sorted(result["judges"].items())
            for criterion, agreement in [("overall", found["overall"]), *sorted(found["criteria"].items())]]


def drift(current: Mapping[str, Any], previous: Mapping[str, Any] | None, *, min_alpha: float = 0.6,
          max_drop: float = 0.1) -> list[str]:
    """Judge-drift findings from two :func:`calibration` results (``previous`` None: the first run).

    A finding for each judge whose overall alpha is not measurable or below ``min_alpha``, and for each judge whose
    overall alpha fell by more than ``max_drop`` since ``previous`` for the same judge and prompt version (a changed
    prompt is a new baseline, not drift)."""
    findings = []
    before = (previous or {}).get("judges", {})
    for judge, result in sorted(current.get("judges", {}).items()):
        alpha, n = result["overall"]["alpha"], result["overall"]["n"]
        if alpha is None:
            findings.append(f"judge {judge}: agreement with the golden set's human scores is not measurable "
                            f"({n} item(s) scored)")
            continue
        if alpha < min_alpha:
            findings.append(f"judge {judge}: agreement with the golden set's human scores is alpha {alpha:.3f}, "
                            f"below the minimum {min_alpha:g} ({n} items)")
        old = before.get(judge)
        if old is None or old.get("prompt_version") != result.get("prompt_version"):
            continue
        old_alpha = old["overall"]["alpha"]
        if old_alpha is not None and old_alpha - alpha > max_drop:
            findings.append(f"judge {judge}: agreement with the golden set's human scores dropped from alpha "
                            f"{old_alpha:.3f} to {alpha:.3f} (more than {max_drop:g}) with the same prompt")
    return findings
