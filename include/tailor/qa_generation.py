"""Generated QA datasets: catalog passages -> model replies -> strict parsing -> filters -> split by section.

Plain Python (the Converse calls take a boto3 ``bedrock-runtime`` client), so every rule is unit-testable:

1. :func:`passages` cuts each product section into ``questions_per_section`` contiguous passages; each passage
   gets one Converse call asking for exactly one ``Q: ...`` / ``A: ...`` pair (a weak model asked for several
   pairs at once repeats itself).
2. :func:`parse_reply` reads a reply strictly: a ``Q:`` line followed by an ``A:`` line; anything else is
   dropped with a reason, never guessed at (an answer cut by ``max_tokens`` keeps only its complete sentences).
3. :func:`curate` drops pairs whose question does not name the product, whose answer only repeats the question
   or is not grounded in the section, that collide with the reference test set, or that duplicate (exactly or
   nearly) a pair already kept.
4. :func:`split_by_section` sends whole product sections to train or test, so no test answer's source text is
   ever seen in training.

Every candidate is either kept or dropped with exactly one reason: ``candidates == kept + sum(dropped)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from tailor.catalog import SECTIONS, Product
from tailor.qa import QADataset, normalise

log = logging.getLogger(__name__)

#: A change of the prompt or the rules below is a new version of every generated dataset.
PROMPT_VERSION = "qa-gen-2026-11-v1"
#: One pair is a question plus a one-to-three-sentence answer: this bounds a runaway reply's cost.
MAX_TOKENS_PER_CALL = 96
CATEGORY_BY_SECTION = {"Description": "factual", "Configuration": "factual", "Safety_instructions": "safety",
                       "Operation": "procedure"}

SYSTEM = (
    "You write exam questions from product documentation. Reply with exactly two lines and nothing else:\n"
    "Q: <one question that names the product>\n"
    "A: <its answer, copied from the text>"
)
USER = (
    "{section} of the {product}:\n{passage}\n\n"
    "Write one question about the {product} that this text answers, then the answer copied from the text. "
    "Use exactly this format:\nQ: ...?\nA: ..."
)

# Reasons a candidate is dropped, in the order the rules are applied.
MALFORMED = ("call_failed", "no_pair_in_reply", "missing_answer", "missing_question", "truncated",
             "not_a_question", "empty_answer", "extra_pair")
FILTERED = ("no_product_in_question", "answer_echoes_question", "ungrounded", "test_set_leak", "duplicate",
            "near_duplicate")
DROP_REASONS = MALFORMED + FILTERED

_LINE = re.compile(r"^([QA]):(.*)$")  # strict: capital Q or A at the start of the line, then a colon
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_LIST_MARKER = re.compile(r"^(\d+[.)]|[-*])$")
_COMPLETE_SENTENCES = re.compile(r"^(.*[.!?])\s", re.S)  # up to the last sentence end followed by a space
_STOPWORD_TEXT = (
    "a an the and or but if then than so of to in on at by for from with without into onto over under up down "
    "is are was were be been being am do does did done has have had having can could may might must shall should "
    "will would it its it's this that these those there here which who whom whose what when where why how "
    "not no nor only also just very more most less least all any both each every few other some such same own "
    "as about after before between during above below again further once i you he she we they them their our "
    "your his her my me us yes"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True)
class Passage:
    """One slice of a product section: the unit of one Converse call."""

    product_name: str
    section: str
    index: int
    text: str


@dataclass(frozen=True)
class Reply:
    """What one Converse call returned (``error`` set instead of ``text`` if it failed after retries)."""

    passage: Passage
    text: str = ""
    stop_reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Candidate:
    product_name: str
    section: str
    question: str
    answer: str


@dataclass(frozen=True)
class Drop:
    reason: str
    product_name: str
    section: str
    detail: str


@dataclass
class ParsedReply:
    pairs: list[Candidate] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    ignored_lines: int = 0  # text outside any Q/A line (preambles, chatter): not a candidate, only counted
    trimmed: int = 0  # answers cut by max_tokens, kept up to their last complete sentence


@dataclass(frozen=True)
class CurationSettings:
    near_duplicate_threshold: float = 0.8
    grounding_floor: float = 0.75


@dataclass
class Curated:
    kept: list[Candidate]
    drops: list[Drop]
    candidates: int
    ignored_lines: int
    trimmed: int

    def drop_counts(self) -> dict[str, int]:
        counts = Counter(d.reason for d in self.drops)
        return {reason: counts[reason] for reason in DROP_REASONS if counts[reason]}


# --- 1. passages and prompts ---------------------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    """Sentences and list items of a section, in order (a list marker such as ``1.`` stays with its item)."""
    found: list[str] = []
    for line in text.splitlines():
        marker = ""
        for part in _SENTENCE_END.split(line.strip()):
            if _LIST_MARKER.match(part):
                marker = part + " "
            elif part:
                found.append(marker + part)
                marker = ""
    return found


def passages(products: Iterable[Product], questions_per_section: int) -> list[Passage]:
    """Each section in ``questions_per_section`` contiguous, near-equal runs of sentences (fewer if shorter)."""
    if questions_per_section < 1:
        raise ValueError(f"questions_per_section must be >= 1, got {questions_per_section}")
    found = []
    for product in products:
        for section in SECTIONS:
            parts = sentences(product.section(section))
            groups = min(questions_per_section, len(parts))
            for index in range(groups):
                chunk = parts[index * len(parts) // groups: (index + 1) * len(parts) // groups]
                found.append(Passage(product.name, section, index, "\n".join(chunk)))
    return found


def prompt(passage: Passage) -> str:
    """The user turn for one passage (the system turn is :data:`SYSTEM`)."""
    return USER.format(section=passage.section.replace("_", " "), product=passage.product_name,
                       passage=passage.text)


def converse_passage(client: Any, model_id: str, passage: Passage, max_tokens: int = MAX_TOKENS_PER_CALL) -> Reply:
    """One greedy Converse call; an error after botocore's retries becomes the reply's ``error``."""
    try:
        response = client.converse(
            modelId=model_id, system=[{"text": SYSTEM}],
            messages=[{"role": "user", "content": [{"text": prompt(passage)}]}],
            inferenceConfig={"maxTokens": max_tokens, "temperature": 0.0},
        )
    except Exception as error:  # recorded as a drop; the other passages go on
        log.warning("%s / %s #%d: Converse failed: %s", passage.product_name, passage.section, passage.index, error)
        return Reply(passage, error=f"{type(error).__name__}: {error}")
    usage = response.get("usage") or {}
    text = "".join(b.get("text", "") for b in response["output"]["message"]["content"])
    return Reply(passage, text, response.get("stopReason", ""), usage.get("inputTokens") or 0,
                 usage.get("outputTokens") or 0)


def generate_replies(client: Any, model_id: str, items: Sequence[Passage], *, concurrency: int = 8,
                     max_tokens: int = MAX_TOKENS_PER_CALL) -> list[Reply]:
    """Every passage through Converse, ``concurrency`` calls in flight (throttling is botocore's to retry)."""
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="qa-gen") as pool:
        return list(pool.map(lambda p: converse_passage(client, model_id, p, max_tokens), items))


# --- 2. strict parsing ---------------------------------------------------------------------------------------


def parse_reply(reply: Reply, wanted: int = 1) -> ParsedReply:
    """Pairs of a ``Q:`` line immediately followed by an ``A:`` line; every other attempt is a drop.

    A reply cut by ``max_tokens`` whose last line is an answer has lost the end of that answer: it is kept up to
    its last complete sentence (a period at the very end may be a cut "3.5"), or dropped as truncated if it has
    none. Valid pairs beyond ``wanted`` are dropped as ``extra_pair`` (the prompt asked for one).
    """
    passage = reply.passage
    parsed = ParsedReply()

    def drop(reason: str, detail: str) -> None:
        parsed.drops.append(Drop(reason, passage.product_name, passage.section, detail[:200]))

    if reply.error is not None:
        drop("call_failed", reply.error)
        return parsed
    lines = [line.strip() for line in reply.text.splitlines() if line.strip()]
    pairs: list[tuple[str, str, bool]] = []  # question, answer, answer is the reply's last line
    question: str | None = None
    for position, line in enumerate(lines):
        match = _LINE.match(line)
        if match is None:
            parsed.ignored_lines += 1
            if question is not None:  # a Q line must be followed directly by its A line
                drop("missing_answer", question)
                question = None
            continue
        tag, body = match.group(1), match.group(2).strip()
        if tag == "Q":
            if question is not None:
                drop("missing_answer", question)
            question = body
        elif question is None:
            drop("missing_question", body)
        else:
            pairs.append((question, body, position == len(lines) - 1))
            question = None
    if question is not None:
        drop("truncated" if reply.stop_reason == "max_tokens" else "missing_answer", question)
    for question_text, answer, last in pairs:
        cut = last and reply.stop_reason == "max_tokens"
        if cut:
            complete = _COMPLETE_SENTENCES.match(answer)
            if complete is None:
                drop("truncated", f"{question_text} -> {answer}")
                continue
            answer = complete.group(1)
        if len(question_text.split()) < 3 or not question_text.endswith("?"):
            drop("not_a_question", question_text)
        elif not normalise(answer):
            drop("empty_answer", question_text)
        elif len(parsed.pairs) >= wanted:
            drop("extra_pair", question_text)
        else:
            parsed.pairs.append(Candidate(passage.product_name, passage.section, question_text, answer))
            parsed.trimmed += cut
    if not pairs and not parsed.drops:
        drop("no_pair_in_reply", reply.text or "(empty reply)")
    return parsed


# --- 3. filters ----------------------------------------------------------------------------------------------


def _forms(word: str) -> set[str]:
    """The word and its forms without a plural or verb suffix ("litres" -> litre, litr), for loose matching."""
    return {word} | {word[: -len(suffix)] for suffix in ("ing", "ed", "es", "s")
                     if word.endswith(suffix) and len(word) - len(suffix) >= 3}


def _product_forms(product_name: str) -> list[str]:
    """How a question or answer may name the product: its full name, or a model code such as ``VM-200``."""
    codes = [normalise(token) for token in product_name.split() if any(c.isdigit() for c in token)]
    return [normalise(product_name), *(c for c in codes if c)]


def names_product(question: str, product_name: str) -> bool:
    """The question names its product: a test question must stand on its own (retrieval sees only it)."""
    text = f" {normalise(question)} "
    return any(f" {form} " in text for form in _product_forms(product_name))


def _without_product(text: str, product_name: str) -> list[str]:
    """Normalised tokens of ``text`` with the product's name and code removed (they prove nothing)."""
    padded = f" {normalise(text)} "
    for form in _product_forms(product_name):
        padded = padded.replace(f" {form} ", " ")
    return padded.split()


def grounding(answer: str, section_text: str, product_name: str) -> tuple[float, list[str]]:
    """Share of the answer's content words found in the section, and the answer's figures the section lacks.

    Cheap on purpose (no model call, no embeddings): a weak generator's typical failure is an invented but
    plausible spec ("2200 cubic meters", "60 bar" where the section says 60 °C); an answer whose content words
    come from the section, and whose figures appear there with the same unit, restates it. The product's name
    is left out (it is in every answer and proves nothing); suffix stripping lets "holds" match "hold";
    stopwords carry no facts. A figure is checked together with the word after it (its unit), unless that word
    is a stopword or another figure.
    """
    source_tokens = normalise(section_text).split()
    source = set().union(*(_forms(w) for w in source_tokens))
    source_pairs = {(a, form) for a, b in zip(source_tokens, source_tokens[1:], strict=False) for form in _forms(b)}
    tokens = _without_product(answer, product_name)
    words = [w for w in tokens if w not in _STOPWORDS]
    unknown_figures = []
    for index, token in enumerate(tokens):
        if not any(c.isdigit() for c in token):
            continue
        unit = tokens[index + 1] if index + 1 < len(tokens) else None
        if unit is None or unit in _STOPWORDS or any(c.isdigit() for c in unit):
            found = token in source
        else:
            found = any((token, form) in source_pairs for form in _forms(unit))
        if not found:
            unknown_figures.append(f"{token} {unit}" if unit and token in source else token)
    if not words:
        return 0.0, unknown_figures
    return sum(bool(_forms(w) & source) for w in words) / len(words), unknown_figures


def echoes_question(question: str, answer: str, product_name: str) -> bool:
    """The answer adds no word the question lacks (a weak model often repeats the question as its answer)."""
    asked = set(normalise(question).split())
    return set(_without_product(answer, product_name)) - _STOPWORDS <= asked


def jaccard(a: str, b: str) -> float:
    """Token-set Jaccard similarity of two texts after :func:`~tailor.qa.normalise`."""
    left, right = set(normalise(a).split()), set(normalise(b).split())
    return len(left & right) / len(left | right) if left | right else 1.0


def curate(replies: Sequence[Reply], section_texts: dict[tuple[str, str], str], reference: QADataset | None,
           settings: CurationSettings, wanted: int = 1) -> Curated:
    """Parse every reply and keep the pairs that pass every rule; the first rule broken names the drop.

    Near-duplicates are compared within a product only: "What is the weight of A?" and "... of B?" differ.
    A pair collides with the reference test set if its question (or its answer) normalises to a test item's,
    or its question is a near-duplicate of a test question about the same product.
    """
    kept: list[Candidate] = []
    drops: list[Drop] = []
    ignored = trimmed = 0
    seen: set[str] = set()
    reference_items = list(reference.items) if reference else []
    reference_questions = {normalise(i.question) for i in reference_items}
    reference_answers = {(normalise(i.product_name), normalise(i.answer)) for i in reference_items}
    for reply in replies:
        parsed = parse_reply(reply, wanted)
        drops.extend(parsed.drops)
        ignored += parsed.ignored_lines
        trimmed += parsed.trimmed
        for pair in parsed.pairs:
            product = normalise(pair.product_name)
            score, unknown = grounding(pair.answer, section_texts[(pair.product_name, pair.section)],
                                       pair.product_name)
            key = normalise(pair.question)
            reason, detail = None, pair.question
            if not names_product(pair.question, pair.product_name):
                reason = "no_product_in_question"
            elif echoes_question(pair.question, pair.answer, pair.product_name):
                reason = "answer_echoes_question"
            elif score < settings.grounding_floor or unknown:
                reason = "ungrounded"
                detail = f"{pair.answer} (content words in section {score:.0%}, unknown figures {unknown})"
            elif key in reference_questions or (product, normalise(pair.answer)) in reference_answers or any(
                    normalise(i.product_name) == product
                    and jaccard(i.question, pair.question) >= settings.near_duplicate_threshold
                    for i in reference_items):
                reason = "test_set_leak"
            elif key in seen:
                reason = "duplicate"
            elif any(normalise(k.product_name) == product
                     and jaccard(k.question, pair.question) >= settings.near_duplicate_threshold for k in kept):
                reason = "near_duplicate"
            if reason:
                drops.append(Drop(reason, pair.product_name, pair.section, detail[:200]))
            else:
                kept.append(pair)
                seen.add(key)
    candidates = len(kept) + len(drops)
    return Curated(kept, drops, candidates, ignored, trimmed)


# --- 4. split, records, version ------------------------------------------------------------------------------


def section_rank(product_name: str, section: str) -> str:
    """A stable pseudo-random rank of a product section (same product and section -> same rank, any run)."""
    return hashlib.sha256(f"{normalise(product_name)}|{section}".encode()).hexdigest()


def split_by_section(kept: Sequence[Candidate], test_fraction: float
                     ) -> tuple[list[Candidate], list[Candidate]]:
    """Whole product sections go to one side: the ``round(test_fraction * n)`` sections of lowest rank to test.

    With two sections or more, each side gets at least one section; with fewer, test is empty (the caller
    decides). Deterministic: no random state, only :func:`section_rank`.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    groups = sorted({(c.product_name, c.section) for c in kept}, key=lambda g: section_rank(*g))
    n_test = min(len(groups) - 1, max(1, round(test_fraction * len(groups)))) if len(groups) >= 2 else 0
    test_groups = set(groups[:n_test])
    train = [c for c in kept if (c.product_name, c.section) not in test_groups]
    test = [c for c in kept if (c.product_name, c.section) in test_groups]
    return train, test


def qa_records(pairs: Sequence[Candidate]) -> list[dict[str, str]]:
    """The QA file format (see :mod:`tailor.qa`) with the source section kept for audits."""
    return [{"product_name": p.product_name, "question": p.question, "answer": p.answer,
             "category": CATEGORY_BY_SECTION[p.section], "source_section": p.section} for p in pairs]


def dataset_version(catalog_sha256: str, params: dict[str, Any], reference_version: str | None) -> str:
    """Content version of a generated dataset: same catalog, params, prompt and test set -> same version."""
    identity = {"catalog_sha256": catalog_sha256, "params": params, "prompt_version": PROMPT_VERSION,
                "reference_test_set": reference_version}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def reply_record(reply: Reply) -> dict[str, Any]:
    """A reply as one JSON line (persisted before any filtering, for audits and re-curation)."""
    return asdict(reply)


def reply_from_record(record: dict[str, Any]) -> Reply:
    """The inverse of :func:`reply_record`."""
    return Reply(**{**record, "passage": Passage(**record["passage"])})


# --- 5. the run's plan and manifest ----------------------------------------------------------------------------


def resolve_params(params: dict[str, Any], default_generator: str) -> dict[str, Any]:
    """The Params that decide a dataset's content, typed, with the generator defaulted: hashed into its version."""
    return {
        "questions_per_section": int(params["questions_per_section"]),
        "product_limit": params.get("product_limit"),
        "generator_model_id": params.get("generator_model_id") or default_generator,
        "near_duplicate_threshold": float(params["near_duplicate_threshold"]),
        "grounding_floor": float(params["grounding_floor"]),
        "test_fraction": float(params["test_fraction"]),
    }


def dataset_manifest(plan: dict[str, Any], generated: dict[str, Any], curated: Curated, train: Sequence[Candidate],
                     test: Sequence[Candidate], *, passages_count: int, run_id: str, created_at: str) -> dict[str, Any]:
    """``manifest.json`` of a generated dataset (written last: it marks the dataset complete): where its pairs came
    from (catalog, generator, prompt, Params, the reference test set), how they were split, and every count."""
    params, prefix = plan["params"], plan["prefix"]
    return {
        "version": plan["version"], "prefix": prefix, "run_id": run_id, "created_at": created_at,
        "catalog": plan["catalog"], "generator_model_id": params["generator_model_id"],
        "prompt_version": PROMPT_VERSION, "params": params, "reference_test_set": plan["reference_test_set"],
        "split_rule": f"by product section: sha256(product|section) ranks the sections, the lowest "
                      f"round({params['test_fraction']} x n) go to test (at least one each side)",
        "counts": {"passages": passages_count, "calls_failed": generated["calls_failed"],
                   "candidates": curated.candidates, "kept": len(curated.kept), "train": len(train),
                   "test": len(test), "dropped": curated.drop_counts(), "answers_trimmed": curated.trimmed,
                   "ignored_lines": curated.ignored_lines},
        "sections": {name: sorted({f"{c.product_name} / {c.section}" for c in pairs})
                     for name, pairs in (("train", train), ("test", test))},
        "tokens": generated["tokens"],
        "files": {"train": f"{prefix}train.json", "test": f"{prefix}test.json", "replies": generated["replies_key"]},
    }
