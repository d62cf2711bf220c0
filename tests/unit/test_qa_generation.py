"""Unit tests of tailor.qa_generation: passages, strict parsing, filters, split by section, versioning."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from tailor.catalog import SECTIONS, parse_catalog
from tailor.qa import QADataset, QAItem, parse_qa
from tailor.qa_generation import (
    DROP_REASONS,
    MAX_TOKENS_PER_CALL,
    SYSTEM,
    Candidate,
    CurationSettings,
    Passage,
    Reply,
    curate,
    dataset_version,
    echoes_question,
    generate_replies,
    grounding,
    jaccard,
    names_product,
    parse_reply,
    passages,
    prompt,
    qa_records,
    reply_from_record,
    reply_record,
    sentences,
    split_by_section,
)
from tests.conftest import SAMPLE_CATALOG

MIXER = "Vortex Mixer VM-200"
PRESS = "Fjord Hydraulic Press HP-450"
SECTION_TEXTS = {
    (MIXER, "Description"): "The Vortex Mixer VM-200 has a 200-litre bowl and a 15 kW drive motor. It weighs 1450 kg.",
    (MIXER, "Configuration"): "The VM-200 holds up to 50 recipes in the touch-screen HMI.",
    (MIXER, "Safety_instructions"): "Wear safety glasses and hearing protection: the noise reaches 84 dB.",
    (MIXER, "Operation"): "1. Lower the bowl.\n2. Charge the liquids first, then the powders.",
    (PRESS, "Description"): "The Fjord Hydraulic Press HP-450 delivers a maximum press force of 450 kN.",
    (PRESS, "Configuration"): "The press runs on 400 V 3-phase with a full-load current of 22 A.",
    (PRESS, "Safety_instructions"): "Production strokes require two-hand control.",
    (PRESS, "Operation"): "Warm the oil to 30 °C by running the pump idle for 10 minutes.",
}


def reply(text: str, product: str = MIXER, section: str = "Description", stop: str = "end_turn",
          error: str | None = None) -> Reply:
    return Reply(Passage(product, section, 0, SECTION_TEXTS[(product, section)]), text, stop, 10, 20, error)


def reasons(parsed_or_curated) -> list[str]:
    return [d.reason for d in parsed_or_curated.drops]


# --- passages and prompts ------------------------------------------------------------------------------------


def test_sentences_keep_list_markers_with_their_items() -> None:
    text = "Operation:\n1. Lower the bowl. Check it is dry.\n2. Charge the liquids.\n- Scraper arm for pastes."
    assert sentences(text) == ["Operation:", "1. Lower the bowl.", "Check it is dry.", "2. Charge the liquids.",
                               "- Scraper arm for pastes."]


def test_passages_split_each_section_into_contiguous_runs() -> None:
    catalog = parse_catalog(SAMPLE_CATALOG.read_bytes(), "sample")
    one = passages(catalog.products[:2], 1)
    assert [(p.product_name, p.section) for p in one] == [(n, s) for n in (MIXER, PRESS) for s in SECTIONS]
    assert all(" ".join(p.text.split()) == " ".join(catalog.product(p.product_name).section(p.section).split())
               for p in one), "one passage per section is the whole section"
    three = [p for p in passages(catalog.products[:1], 3) if p.section == "Operation"]
    assert [p.index for p in three] == [0, 1, 2]
    assert "\n".join(p.text for p in three) == "\n".join(sentences(catalog.products[0].operation))
    with pytest.raises(ValueError, match="questions_per_section"):
        passages(catalog.products, 0)


def test_short_sections_yield_fewer_passages() -> None:
    catalog = parse_catalog(b"Name: Tiny T-1\nDescription: One sentence.\nSafety_instructions: Be careful.\n"
                            b"Configuration: Red. Blue.\nOperation: Press start.\n", "tiny")
    assert len(passages(catalog.products, 5)) == 1 + 1 + 2 + 1


def test_prompt_names_product_section_and_the_strict_format() -> None:
    text = prompt(Passage(MIXER, "Safety_instructions", 0, "Wear safety glasses."))
    assert "Safety instructions of the Vortex Mixer VM-200:\nWear safety glasses." in text
    assert "Q: ...?\nA: ..." in text and "Q: <" in SYSTEM and "A: <" in SYSTEM


# --- strict parsing ------------------------------------------------------------------------------------------


def test_a_well_formed_reply_gives_one_pair() -> None:
    parsed = parse_reply(reply("Q: How heavy is the Vortex Mixer VM-200?\nA: It weighs 1450 kg.\n"))
    assert parsed.pairs == [Candidate(MIXER, "Description", "How heavy is the Vortex Mixer VM-200?",
                                      "It weighs 1450 kg.")]
    assert parsed.drops == [] and parsed.ignored_lines == 0


def test_blank_lines_and_surrounding_whitespace_are_tolerated() -> None:
    parsed = parse_reply(reply("\n  Q: How heavy is the VM-200?  \n\n A: 1450 kg. \n"))
    assert [(p.question, p.answer) for p in parsed.pairs] == [("How heavy is the VM-200?", "1450 kg.")]


@pytest.mark.parametrize(
    ("text", "stop", "expected", "ignored", "pairs"),
    [
        pytest.param("Sure! The mixer is great.", "end_turn", ["no_pair_in_reply"], 1, 0, id="prose-only"),
        pytest.param("", "end_turn", ["no_pair_in_reply"], 0, 0, id="empty"),
        pytest.param("**Q:** How heavy is it?\n**A:** 1450 kg.", "end_turn", ["no_pair_in_reply"], 2, 0,
                     id="markdown-is-not-the-format"),
        pytest.param("Question: How heavy?\nAnswer: 1450 kg.", "end_turn", ["no_pair_in_reply"], 2, 0,
                     id="spelled-out"),
        pytest.param("q: How heavy is the VM-200?\na: 1450 kg.", "end_turn", ["no_pair_in_reply"], 2, 0,
                     id="lower-case-tags"),
        pytest.param("Q: How heavy is the VM-200?", "end_turn", ["missing_answer"], 0, 0, id="question-only"),
        pytest.param("Q: How heavy is the VM-200? A: 1450 kg.", "end_turn", ["missing_answer"], 0, 0,
                     id="q-and-a-on-one-line"),
        pytest.param("Q: How heavy is the VM-200?\nQ: How big is the VM-200?\nA: 200 litres.", "end_turn",
                     ["missing_answer"], 0, 1, id="two-questions-one-answer"),
        pytest.param("Q: How heavy is the VM-200?\nThe answer is:\nA: 1450 kg.", "end_turn",
                     ["missing_answer", "missing_question"], 1, 0, id="text-between-q-and-a"),
        pytest.param("A: 1450 kg.", "end_turn", ["missing_question"], 0, 0, id="answer-only"),
        pytest.param("Q: How heavy is the VM-200?\nA: It weighs 14", "max_tokens", ["truncated"], 0, 0,
                     id="cut-answer"),
        pytest.param("Q: How heavy is the VM-200?\nA: 1450 kg.\nQ: What is the", "max_tokens", ["truncated"], 0, 1,
                     id="cut-second-question"),
        pytest.param("Q: The VM-200 weighs 1450 kg.\nA: Yes.", "end_turn", ["not_a_question"], 0, 0,
                     id="statement-not-question"),
        pytest.param("Q: Weight?\nA: 1450 kg.", "end_turn", ["not_a_question"], 0, 0, id="too-short"),
        pytest.param("Q: How heavy is the VM-200?\nA: ...", "end_turn", ["empty_answer"], 0, 0, id="empty-answer"),
    ],
)
def test_garbled_replies_are_dropped_by_reason_never_guessed(text: str, stop: str, expected: list[str],
                                                             ignored: int, pairs: int) -> None:
    parsed = parse_reply(reply(text, stop=stop))
    assert len(parsed.pairs) == pairs
    assert reasons(parsed) == expected
    assert parsed.ignored_lines == ignored
    assert set(expected) <= set(DROP_REASONS)


def test_two_questions_one_answer_keeps_the_answered_pair() -> None:
    parsed = parse_reply(reply("Q: How heavy is the VM-200?\nQ: How big is the VM-200?\nA: 200 litres."))
    assert [(p.question, p.answer) for p in parsed.pairs] == [("How big is the VM-200?", "200 litres.")]


def test_pairs_beyond_the_request_are_extra_and_a_weak_models_echoes_are_orphans() -> None:
    text = ("Q: How heavy is the VM-200?\nA: 1450 kg.\nA: 1450 kg.\n"
            "Q: How big is the VM-200 bowl?\nA: 200 litres.\nA: The V")
    parsed = parse_reply(reply(text, stop="max_tokens"))
    assert [p.question for p in parsed.pairs] == ["How heavy is the VM-200?"]
    assert reasons(parsed) == ["missing_question", "missing_question", "extra_pair"]
    assert len(parse_reply(reply(text, stop="max_tokens"), wanted=2).pairs) == 2


def test_a_complete_pair_followed_by_chatter_survives_a_max_tokens_stop() -> None:
    parsed = parse_reply(reply("Q: How heavy is the VM-200?\nA: 1450 kg.\n\nQuestion: What is the", stop="max_tokens"))
    assert len(parsed.pairs) == 1 and parsed.ignored_lines == 1 and parsed.drops == []


def test_an_answer_cut_by_max_tokens_keeps_its_complete_sentences() -> None:
    cut = parse_reply(reply("Q: How heavy is the VM-200?\nA: It weighs 1450 kg. It has a 200-litre bo",
                            stop="max_tokens"))
    assert [p.answer for p in cut.pairs] == ["It weighs 1450 kg."] and cut.trimmed == 1 and cut.drops == []
    uncut = parse_reply(reply("Q: How heavy is the VM-200?\nA: It weighs 1450 kg. It has a 200-litre bo"))
    assert uncut.pairs[0].answer.endswith("200-litre bo") and uncut.trimmed == 0
    number = parse_reply(reply("Q: What is the pressure of the VM-200 jacket?\nA: It is 3.", stop="max_tokens"))
    assert number.pairs == [] and reasons(number) == ["truncated"]  # "3." may be a cut "3.5"


def test_a_failed_call_is_one_drop() -> None:
    parsed = parse_reply(reply("", error="ThrottlingException: slow down"))
    assert reasons(parsed) == ["call_failed"] and "ThrottlingException" in parsed.drops[0].detail


# --- filters -------------------------------------------------------------------------------------------------


def test_names_product_by_full_name_or_model_code() -> None:
    assert names_product("How heavy is the vortex mixer VM-200?", MIXER)
    assert names_product("How heavy is the VM 200?", MIXER)
    assert not names_product("How heavy is the Vortex Mixer?", MIXER)
    assert not names_product("How heavy is the VM-2000?", MIXER)
    assert names_product("What does the Pump do?", "Pump") and not names_product("What does it do?", "Pump")


def test_grounding_counts_content_words_and_every_figure() -> None:
    section = SECTION_TEXTS[(MIXER, "Description")]
    score, unknown = grounding("The Vortex Mixer VM-200 weighs 1450 kg.", section, MIXER)
    assert score == 1.0 and unknown == []
    score, unknown = grounding("The VM-200 bowl holds 2200 litres.", section, MIXER)
    assert unknown == ["2200"]
    score, _ = grounding("It is a high-tech device that removes impurities from water.", section, MIXER)
    assert score < 0.3
    assert grounding("The VM-200 holds 50 recipes.", SECTION_TEXTS[(MIXER, "Configuration")], MIXER)[0] == 1.0
    assert grounding("Yes, it is.", section, MIXER) == (0.0, [])


def test_grounding_ignores_the_product_name_and_checks_figures_with_their_unit() -> None:
    section = SECTION_TEXTS[(MIXER, "Description")]
    assert grounding("The Vortex Mixer VM-200.", section, MIXER) == (0.0, [])  # the name proves nothing
    score, unknown = grounding("The Vortex Mixer VM-200 handles sealants.", section, MIXER)
    assert score == 0.0 and unknown == []  # 5 of 6 words are the name: without it, nothing is grounded
    assert grounding("It has a 200-litre bowl.", section, MIXER) == (1.0, [])
    assert grounding("It weighs 200 kg.", section, MIXER)[1] == ["200 kg"]  # 200 is there, but in litres
    noise = SECTION_TEXTS[(MIXER, "Safety_instructions")]
    assert grounding("The noise reaches 84 dB.", noise, MIXER) == (1.0, [])
    assert grounding("The noise reaches 84 bar.", noise, MIXER)[1] == ["84 bar"]
    assert grounding("The VM-200 noise reaches 84 dB.", noise, MIXER) == (1.0, [])  # the code's 200 is no figure


def test_an_answer_that_only_repeats_the_question_is_caught() -> None:
    question = "How does the Vortex Mixer VM-200 handle the Vortex Mixer VM-200?"
    assert echoes_question(question, question, MIXER)
    assert echoes_question("How heavy is the VM-200 when empty?", "The Vortex Mixer VM-200, when empty.", MIXER)
    assert not echoes_question("How heavy is the VM-200?", "It weighs 1450 kg.", MIXER)


def test_jaccard_on_normalised_tokens() -> None:
    assert jaccard("How heavy is the VM-200?", "how heavy is the vm 200") == 1.0
    assert jaccard("a b", "c d") == 0.0
    assert 0.6 < jaccard("What is the weight of the VM-200?", "What is the weight of the VM-200 empty?") < 1


def _pair_reply(question: str, answer: str, product: str = MIXER, section: str = "Description") -> Reply:
    return reply(f"Q: {question}\nA: {answer}", product, section)


def test_curate_applies_each_rule_and_accounts_for_every_candidate() -> None:
    reference = QADataset("test.json", (QAItem("t1", MIXER, "What is the bowl capacity of the Vortex Mixer VM-200?",
                                                "It has a 200-litre bowl."),), "0" * 64)
    replies = [
        _pair_reply("How heavy is the Vortex Mixer VM-200?", "The Vortex Mixer VM-200 weighs 1450 kg."),  # kept
        _pair_reply("How heavy is the vortex mixer VM-200 ??", "It weighs 1450 kg."),  # duplicate
        _pair_reply("How heavy is the Vortex Mixer VM-200 when empty?", "It weighs 1450 kg."),  # near duplicate
        _pair_reply("How heavy is it?", "It weighs 1450 kg."),  # no product
        _pair_reply("How heavy is the VM-200 bowl?", "The VM-200 bowl is heavy."),  # echo
        _pair_reply("What does the VM-200 clean?", "The VM-200 removes impurities from water."),  # ungrounded
        _pair_reply("What is the bowl capacity of the Vortex Mixer VM-200?", "200 litres."),  # leak (question)
        _pair_reply("How big is the bowl of the VM-200?", "It has a 200-litre bowl!"),  # leak (answer)
        _pair_reply("What is the bowl capacity of the VM-200 mixer?", "A 200-litre bowl."),  # leak (near dup)
        _pair_reply("How heavy is the Fjord Hydraulic Press HP-450?", "The HP-450 delivers 450 kN.", PRESS),  # kept
        _pair_reply("What power does the Fjord Hydraulic Press HP-450 need?", "400 V 3-phase, 22 A.", PRESS,
                    "Configuration"),  # kept
        reply("Sorry, I cannot help with that."),  # malformed
        reply("", error="AccessDeniedException: no model access"),  # call failed
    ]
    curated = curate(replies, SECTION_TEXTS, reference, CurationSettings(near_duplicate_threshold=0.6))
    assert [(k.product_name, k.question) for k in curated.kept] == [
        (MIXER, "How heavy is the Vortex Mixer VM-200?"),
        (PRESS, "How heavy is the Fjord Hydraulic Press HP-450?"),
        (PRESS, "What power does the Fjord Hydraulic Press HP-450 need?"),
    ]
    assert reasons(curated) == ["duplicate", "near_duplicate", "no_product_in_question", "answer_echoes_question",
                                "ungrounded",
                                "test_set_leak", "test_set_leak", "test_set_leak", "no_pair_in_reply",
                                "call_failed"]
    assert curated.candidates == len(curated.kept) + sum(curated.drop_counts().values()) == 13
    assert list(curated.drop_counts()) == [r for r in DROP_REASONS if r in curated.drop_counts()]


def test_curate_without_reference_and_with_a_strict_grounding_floor() -> None:
    replies = [_pair_reply("How heavy is the VM-200?", "The VM-200 weighs 1450 kg empty.")]
    assert len(curate(replies, SECTION_TEXTS, None, CurationSettings(grounding_floor=0.5)).kept) == 1
    strict = curate(replies, SECTION_TEXTS, None, CurationSettings(grounding_floor=1.0))
    assert strict.kept == [] and reasons(strict) == ["ungrounded"]


def test_near_duplicates_are_compared_within_a_product_only() -> None:
    mixer = _pair_reply("How heavy is the Vortex Mixer VM-200?", "It weighs 1450 kg.")
    press = _pair_reply("How heavy is the Fjord Hydraulic Press HP-450?", "It delivers 450 kN.", PRESS)
    again = _pair_reply("How heavy is the Vortex Mixer VM-200 really?", "It weighs 1450 kg.")
    assert jaccard(mixer.text.splitlines()[0], press.text.splitlines()[0]) >= 0.3
    curated = curate([mixer, press, again], SECTION_TEXTS, None, CurationSettings(near_duplicate_threshold=0.3))
    assert [k.product_name for k in curated.kept] == [MIXER, PRESS] and reasons(curated) == ["near_duplicate"]


# --- split, records, version ---------------------------------------------------------------------------------


def _kept(per_section: int = 2) -> list[Candidate]:
    return [Candidate(product, section, f"Question {i} about the {section} of the {product}?", f"Answer {i}.")
            for product, section in SECTION_TEXTS for i in range(per_section)]


def test_split_is_by_section_deterministic_and_disjoint() -> None:
    kept = _kept()
    train, test = split_by_section(kept, 0.25)
    assert len(train) + len(test) == len(kept)
    train_sections = {(c.product_name, c.section) for c in train}
    test_sections = {(c.product_name, c.section) for c in test}
    assert not train_sections & test_sections
    assert len(test_sections) == 2 and len(train_sections) == 6  # round(0.25 x 8) sections
    shuffled = kept[:]
    random.Random(7).shuffle(shuffled)
    assert {(c.product_name, c.section) for c in split_by_section(shuffled, 0.25)[1]} == test_sections
    assert split_by_section(kept, 0.25) == (train, test)


def test_split_keeps_one_section_on_each_side_and_refuses_a_single_section() -> None:
    two = [c for c in _kept(1) if c.product_name == MIXER][:2]
    for fraction in (0.01, 0.5, 0.99):
        train, test = split_by_section(two, fraction)
        assert len(train) == 1 and len(test) == 1
    one = _kept(3)[:3]
    assert split_by_section(one, 0.5) == (one, [])
    assert split_by_section([], 0.5) == ([], [])
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_section(one, 1.0)


def test_records_are_the_qa_file_format() -> None:
    train, test = split_by_section(_kept(), 0.25)
    for pairs in (train, test):
        records = qa_records(pairs)
        dataset = parse_qa(json.dumps(records).encode(), "generated.json")
        assert len(dataset.items) == len(pairs)
        assert set(records[0]) == {"product_name", "question", "answer", "category", "source_section"}
    categories = {r["source_section"]: r["category"] for r in qa_records(_kept(1))}
    assert categories == {"Description": "factual", "Configuration": "factual", "Safety_instructions": "safety",
                          "Operation": "procedure"}


def test_dataset_version_is_a_content_hash_of_the_inputs() -> None:
    params = {"questions_per_section": 2, "product_limit": None, "test_fraction": 0.25}
    version = dataset_version("a" * 64, params, "abc")
    assert version == dataset_version("a" * 64, dict(reversed(params.items())), "abc") and len(version) == 12
    assert version != dataset_version("b" * 64, params, "abc")
    assert version != dataset_version("a" * 64, {**params, "questions_per_section": 3}, "abc")
    assert version != dataset_version("a" * 64, params, "abd")


def test_reply_records_round_trip_through_json() -> None:
    original = reply("Q: How heavy is the VM-200?\nA: 1450 kg.", stop="max_tokens")
    assert reply_from_record(json.loads(json.dumps(reply_record(original)))) == original


# --- Converse calls ------------------------------------------------------------------------------------------


class FakeBedrock:
    """A bedrock-runtime client double that records requests and the most calls ever in flight."""

    def __init__(self, fail_for: str | None = None) -> None:
        self.requests: list[dict] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        self.fail_for = fail_for

    def converse(self, **request):
        with self.lock:
            self.requests.append(request)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.01)
        with self.lock:
            self.in_flight -= 1
        if self.fail_for and self.fail_for in request["messages"][0]["content"][0]["text"]:
            raise RuntimeError("model not available")
        return {"output": {"message": {"content": [{"text": "Q: How heavy is the VM-200?\nA: 1450 kg."}]}},
                "stopReason": "end_turn", "usage": {"inputTokens": 120, "outputTokens": 18}}


def test_generate_replies_is_greedy_bounded_and_records_failures() -> None:
    items = [Passage(MIXER if i % 2 else PRESS, "Description", i, f"text {i}") for i in range(12)]
    client = FakeBedrock(fail_for="text 3")
    replies = generate_replies(client, "meta.llama3-1-8b-instruct-v1:0", items, concurrency=3)
    assert [r.passage for r in replies] == items
    assert client.most_in_flight <= 3
    request = client.requests[0]
    assert request["modelId"] == "meta.llama3-1-8b-instruct-v1:0" and request["system"] == [{"text": SYSTEM}]
    assert request["inferenceConfig"] == {"maxTokens": MAX_TOKENS_PER_CALL, "temperature": 0.0}
    failed = [r for r in replies if r.error]
    assert [r.passage.index for r in failed] == [3] and "model not available" in (failed[0].error or "")
    ok = replies[0]
    assert (ok.text, ok.stop_reason, ok.input_tokens, ok.output_tokens) == (
        "Q: How heavy is the VM-200?\nA: 1450 kg.", "end_turn", 120, 18)


# --- the run's plan and manifest ------------------------------------------------------------------------------


def test_params_are_typed_and_the_generator_defaulted() -> None:
    from tailor.qa_generation import resolve_params

    raw = {"questions_per_section": "2", "product_limit": None, "generator_model_id": "",
           "near_duplicate_threshold": 1, "grounding_floor": "0.75", "test_fraction": 0.3}
    resolved = resolve_params(raw, "meta.llama3-1-8b-instruct-v1:0")
    assert resolved == {"questions_per_section": 2, "product_limit": None,
                        "generator_model_id": "meta.llama3-1-8b-instruct-v1:0", "near_duplicate_threshold": 1.0,
                        "grounding_floor": 0.75, "test_fraction": 0.3}
    assert resolve_params({**raw, "generator_model_id": "amazon.nova-lite-v1:0"}, "x")["generator_model_id"] == \
        "amazon.nova-lite-v1:0"


def test_the_manifest_records_sources_split_and_every_count() -> None:
    from tailor.qa_generation import Candidate, Curated, Drop, dataset_manifest

    kept = [Candidate("Pump P-200", "Specifications", "Max pressure?", "16 bar."),
            Candidate("Valve V-10", "Overview", "Material?", "Stainless steel.")]
    drops = [Drop("ungrounded", "Pump P-200", "Overview", "0.40 < 0.75"), Drop("ungrounded", "Valve V-10", "X", "")]
    curated = Curated(kept=kept, drops=drops, candidates=4, ignored_lines=1, trimmed=0)
    plan = {"version": "qa-gen-abc", "prefix": "qa/generated/qa-gen-abc/", "catalog": {"version": "c1"},
            "reference_test_set": {"version": "qa-1"},
            "params": {"generator_model_id": "g", "test_fraction": 0.5}}
    generated = {"calls_failed": 1, "tokens": {"input": 10, "output": 5},
                 "replies_key": "qa/generated/qa-gen-abc/replies.jsonl"}
    manifest = dataset_manifest(plan, generated, curated, kept[:1], kept[1:], passages_count=3, run_id="manual__1",
                                created_at="2026-11-28T12:00:00+00:00")
    assert manifest["counts"] == {"passages": 3, "calls_failed": 1, "candidates": 4, "kept": 2, "train": 1,
                                  "test": 1, "dropped": {"ungrounded": 2}, "answers_trimmed": 0, "ignored_lines": 1}
    assert manifest["sections"] == {"train": ["Pump P-200 / Specifications"], "test": ["Valve V-10 / Overview"]}
    assert manifest["files"] == {"train": "qa/generated/qa-gen-abc/train.json",
                                 "test": "qa/generated/qa-gen-abc/test.json",
                                 "replies": "qa/generated/qa-gen-abc/replies.jsonl"}
    assert "round(0.5 x n)" in manifest["split_rule"] and manifest["generator_model_id"] == "g"
    json.dumps(manifest)
