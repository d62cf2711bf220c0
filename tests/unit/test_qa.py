"""``tailor.qa`` rules added for issue 11: normalise in any script, ids, JSON that only Python reads, products
matched against the catalog, batch plans within ``max_map_length``; and the retrieval-hit and model-id rules."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import pytest

from tailor.bedrock_ids import MODEL_ID_MAX_LENGTH, MODEL_ID_PATTERN, model_id_problems
from tailor.exceptions import QADatasetError
from tailor.metrics.retrieval import retrieval_hit
from tailor.qa import MAX_PROBLEMS, Batch, QADataset, batch_plan, check_products, load_qa, normalise, parse_qa

CATALOG = ["Vortex Mixer VM-200", "Fjord Hydraulic Press HP-450", "Aurora Label Printer LP-12"]


def item(question: str = "What is the bowl volume of the VM-200?", **extra: Any) -> dict[str, Any]:
    return {"product_name": "Vortex Mixer VM-200", "question": question, "answer": "200 litres.", **extra}


def parse(items: list[Any]) -> QADataset:
    return parse_qa(json.dumps(items, ensure_ascii=False).encode(), "qa.json")


def rejected(data: bytes | list[Any]) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()
    with pytest.raises(QADatasetError) as caught:
        parse_qa(raw, "qa.json")
    return str(caught.value)


# --- normalise in any script --------------------------------------------------------------------------------------

QUESTIONS = {
    "japanese": "VM-200のボウル容量は何リットルですか？",
    "japanese_other": "VM-200の重量は何キログラムですか？",
    "chinese": "VM-200的碗容量是多少升？",
    "russian": "Каков объём чаши VM-200?",
    "russian_other": "Какова масса VM-200?",
    "greek": "Πόση είναι η χωρητικότητα του κάδου του VM-200;",
    "greek_other": "Πόσο ζυγίζει το VM-200;",
    "hindi": "VM-200 के कटोरे की क्षमता कितनी है?",
    "english": "What is the bowl volume of the VM-200?",
}


def test_questions_in_different_scripts_normalise_apart() -> None:
    """BUG: only [a-z0-9] was kept, so every one of these was "vm 200" and a duplicate of the first."""
    keys = {name: normalise(q) for name, q in QUESTIONS.items()}
    assert len(set(keys.values())) == len(QUESTIONS), keys
    assert all(len(key) > len("vm 200") for key in keys.values())
    assert len(parse([item(q) for q in QUESTIONS.values()]).items) == len(QUESTIONS)


@pytest.mark.parametrize(("question", "again"), [
    ("VM-200のボウル容量は何リットルですか？", "ＶＭ－２００の ボウル容量は、何リットルですか?"),  # full-width forms
    ("Каков объём чаши VM-200?", "КАКОВ ОБЪЁМ ЧАШИ — vm 200"),
    ("Πόση είναι η χωρητικότητα του κάδου;", "ΠΌΣΗ ΕΊΝΑΙ Η ΧΩΡΗΤΙΚΌΤΗΤΑ ΤΟΥ ΚΆΔΟΥ"),
    ("Wie groß ist die Schüssel?", "WIE GROSS IST DIE SCHÜSSEL"),  # casefold: ß = ss
    ("Café crème?", "Cafe\u0301 cre\u0300me"),  # NFD spelling
], ids=["japanese", "russian", "greek", "german", "nfd"])
def test_real_duplicates_are_caught_in_any_script(question: str, again: str) -> None:
    assert normalise(question) == normalise(again)
    message = rejected([item(question), item("Another question?"), item(again)])
    assert message.startswith("qa.json item 2: duplicate of item 0")


def test_normalise_keeps_letters_digits_and_marks_and_drops_the_rest() -> None:
    assert normalise("VM-200の最大回転数は？") == "vm 200 の 最 大 回 転 数 は"  # one token per CJK character
    assert normalise("क्षमता कितनी है?") == "क्षमता कितनी है"  # combining marks stay inside the word
    assert normalise("  Hello, WORLD!! (v2_x) °C – ①  ") == "hello world v2 x c 1"
    assert normalise("?!…") == ""


def test_ascii_questions_normalise_as_before() -> None:
    """The derived sample ids of ASCII questions (every packaged one) must not change."""
    for text in ("What is the rated power of the Widget W-1?", "  a_b--C  9 ", "Is 5 °C allowed?"):
        assert normalise(text) == " ".join(re.findall(r"[a-z0-9]+", text.lower()))


# --- JSON only Python reads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "field", "token"), [
    ('{"product_name": "P", "question": "Q?", "answer": NaN}', "answer", "NaN"),
    ('{"product_name": "P", "question": "Q?", "answer": "A", "score": Infinity}', "score", "Infinity"),
    ('{"product_name": "P", "question": "Q?", "answer": "A", "meta": {"w": [1, -Infinity]}}', "meta.w[1]",
     "-Infinity"),
], ids=["nan", "infinity", "nested"])
def test_non_finite_numbers_are_refused_with_their_field(raw: str, field: str, token: str) -> None:
    message = rejected(f'[{json.dumps(item())}, {raw}]'.encode())
    assert message == (f'qa.json item 1: field "{field}" is {token}: NaN, Infinity and -Infinity are not JSON '
                       "numbers; write a number, or the text as a string")


def test_duplicate_keys_are_refused_at_any_depth() -> None:
    raw = (b'[{"product_name": "P", "question": "Q?", "answer": "A", "answer": "B"},'
           b' {"product_name": "P", "question": "R?", "answer": "A", "meta": {"k": 1, "k": 2}}]')
    assert rejected(raw).splitlines() == [
        'qa.json item 0: field "answer" appears twice in one object (duplicate key; JSON readers keep only the '
        "last); keep one",
        'qa.json item 1: field "meta.k" appears twice in one object (duplicate key; JSON readers keep only the '
        "last); keep one",
    ]


@pytest.mark.parametrize(("raw", "expected"), [
    (rb'"question": "Q? \ud800"', 'field "question" contains a lone surrogate (\\ud800)'),
    (rb'"question": "Q?", "tags": ["ok", "\udfff"]', 'field "tags[1]" contains a lone surrogate (\\udfff)'),
    (rb'"question": "Q?", "x\udc00": 1', 'the name of field "x\\udc00" contains a lone surrogate (\\udc00)'),
    (rb'"question": "Q?\u0000"', 'field "question" contains a NUL character (\\u0000); remove it'),
    (rb'"question": "Q?", "meta": {"note": "a\u0000b"}', 'field "meta.note" contains a NUL character'),
], ids=["surrogate", "surrogate-in-list", "surrogate-in-key", "nul", "nul-nested"])
def test_lone_surrogates_and_nul_are_refused_with_their_field(raw: bytes, expected: str) -> None:
    data = b'[{"product_name": "P", "answer": "A", ' + raw + b"}]"
    message = rejected(data)
    assert message.startswith(f"qa.json item 0: {expected}"), message
    message.encode("utf-8")  # the message itself is printable: no raw surrogate in it


def test_a_valid_surrogate_pair_escape_is_a_character() -> None:
    dataset = parse_qa(b'[{"product_name": "P", "question": "Mixer \\ud83c\\udf00?", "answer": "A"}]', "q")
    assert dataset.items[0].question == "Mixer \U0001f300?"


# --- sample ids ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ids", "bad_item", "shown"), [
    ([1, "1"], 1, "1"), (["q1", "q2", "q1"], 2, "q1"), ([7, 7], 1, "7"), (["é", "e\u0301"], 1, "e\u0301"),
], ids=["int-and-string", "string-twice", "int-twice", "nfc-and-nfd"])
def test_ids_must_be_unique_as_text(ids: list[Any], bad_item: int, shown: str) -> None:
    first = ids.index(ids[bad_item]) if ids[bad_item] in ids[:bad_item] else 0
    message = rejected([item(f"Question {i}?", id=value) for i, value in enumerate(ids)])
    assert message == (f'qa.json item {bad_item}: duplicate id "{shown}": item {first} has the same id (ids compare '
                       'as text: 1 and "1" are one id); give each item its own id')


def test_an_explicit_id_may_not_take_a_derived_one() -> None:
    derived = parse([item()]).items[0].sample_id
    assert "duplicate id" in rejected([item(), item("Other?", id=derived)])


@pytest.mark.parametrize(("value", "kind"), [
    (True, "true/false"), (False, "true/false"), (None, "null"), ({"a": 1}, "an object"), ([1], "a list"),
    (1.0, "a number with a fraction or exponent"), (1.5, "a number with a fraction or exponent"),
], ids=["true", "false", "null", "object", "list", "float-1.0", "float"])
def test_id_must_be_a_string_or_an_integer(value: Any, kind: str) -> None:
    assert rejected([item(), item("Other?", id=value)]) == (
        f'qa.json item 1: id must be a string or an integer, got {kind}; write e.g. "q-001" or 17, or leave it out')


@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "blank"])
def test_id_must_not_be_empty(value: str) -> None:
    assert "qa.json item 0: id is empty" in rejected([item(id=value)])


@pytest.mark.parametrize(("value", "code"), [("q\t1", "0009"), ("q\n1", "000A"), ("q\x7f", "007F"),
                                             ("q\u200b1", "200B"), ("q\u202e1", "202E"), ("q\u20281", "2028")],
                         ids=["tab", "newline", "del", "zero-width-space", "bidi-override", "line-separator"])
def test_id_must_have_no_control_or_invisible_character(value: str, code: str) -> None:
    message = rejected([item(id=value)])
    assert message.startswith('qa.json item 0: id "q')
    assert f"contains a control or invisible character (U+{code}); ids name results" in message
    assert value not in message  # shown escaped


def test_id_must_fit_the_warehouse_column() -> None:
    assert parse([item(id="x" * 128)]).items[0].sample_id == "x" * 128
    assert parse([item(id=10**127)]).items[0].sample_id == "1" + "0" * 127
    assert rejected([item(id="x" * 129)]) == (
        "qa.json item 0: id is 129 characters (129 bytes in UTF-8), longer than the warehouse column "
        "eval_score.sample_id VARCHAR(128) holds (128 bytes); shorten it")
    assert "id is 43 characters (129 bytes in UTF-8)" in rejected([item(id="試" * 43)])  # Redshift counts bytes


def test_ids_kept_as_given_and_derived_when_absent() -> None:
    dataset = parse([item(id="q-001"), item("Second?", id=17), item("Third?", id=-3), item("Fourth?")])
    assert [i.sample_id for i in dataset.items][:3] == ["q-001", "17", "-3"]
    assert re.fullmatch(r"[0-9a-f]{12}", dataset.items[3].sample_id)


def test_many_problems_are_capped() -> None:
    message = rejected([item(f"Q {i}?", id=True) for i in range(MAX_PROBLEMS + 7)])
    lines = message.splitlines()
    assert len(lines) == MAX_PROBLEMS + 1 and lines[-1] == "... and 7 more"


# --- products against the catalog ---------------------------------------------------------------------------------


def test_product_names_match_the_catalog_under_name_key() -> None:
    dataset = parse([item(), {**item("Force?"), "product_name": "fjord  hydraulic press\u200b HP-450"},
                     {**item("Heat?"), "product_name": "AURORA LABEL PRINTER LP-12"}])
    check_products(dataset, CATALOG)


def test_unknown_products_are_all_listed_with_a_suggestion() -> None:
    dataset = parse([item(), {**item("Force?"), "product_name": "Vortex Mixr VM-200"},
                     {**item("Heat?"), "product_name": "Quantum Toaster QT-1"}])
    with pytest.raises(QADatasetError) as caught:
        check_products(dataset, CATALOG, "catalog version abc123")
    assert str(caught.value).splitlines() == [
        "qa.json item 1: product_name 'Vortex Mixr VM-200' matches no product of catalog version abc123 "
        "(3 products); did you mean 'Vortex Mixer VM-200'? fix the name in the QA set, or sync a catalog that "
        "has the product",
        "qa.json item 2: product_name 'Quantum Toaster QT-1' matches no product of catalog version abc123 "
        "(3 products); fix the name in the QA set, or sync a catalog that has the product",
    ]


def test_retrieval_hit_compares_names_like_the_catalog() -> None:
    """BUG: an exact == made a case or spacing difference between QA set and catalog a 0 % hit rate."""
    chunks = [{"product_name": "Fjord Hydraulic Press HP-450", "text": "..."},
              {"product_name": "VORTEX MIXER  VM-200", "text": "..."}]
    assert retrieval_hit("Vortex Mixer VM-200", chunks)
    assert retrieval_hit("vortex mixer vm\u200b-200", [{"product_name": "Vortex Mixer VM-200"}])
    assert not retrieval_hit("Aurora Label Printer LP-12", chunks)
    assert not retrieval_hit("Vortex Mixer VM-200", [{"text": "no metadata"}, {"product_name": None}])
    assert not retrieval_hit("Vortex Mixer VM-200", [])


# --- batches within max_map_length --------------------------------------------------------------------------------


def _check_plan(plan: list[Batch], n_items: int, approaches: list[str], max_tasks: int) -> None:
    assert len(plan) <= max_tasks
    for approach in approaches:
        mine = [b for b in plan if b.approach == approach]
        assert [b.index for b in mine] == list(range(len(mine)))
        covered = [i for b in mine for i in range(b.start, b.stop)]
        assert covered == list(range(n_items)), "every item exactly once per approach, in order"


def test_small_sets_keep_the_configured_batch_size() -> None:
    plan = batch_plan(45, ["rag", "finetune", "hybrid"], 8, 1024)
    assert len(plan) == 18 and {b.stop - b.start for b in plan} == {8, 5}
    _check_plan(plan, 45, ["rag", "finetune", "hybrid"], 1024)


@pytest.mark.parametrize(("n_items", "approaches", "batch_size", "max_tasks"), [
    (10_000, 3, 8, 1024), (100_000, 3, 1, 1024), (1025, 1, 1, 1024), (5000, 2, 4, 10), (7, 3, 1, 3), (1, 3, 1, 3),
])
def test_large_sets_grow_the_batch_size_to_stay_within_the_limit(n_items: int, approaches: int, batch_size: int,
                                                                 max_tasks: int) -> None:
    names = ["rag", "finetune", "hybrid"][:approaches]
    plan = batch_plan(n_items, names, batch_size, max_tasks)
    _check_plan(plan, n_items, names, max_tasks)
    size = plan[0].stop - plan[0].start
    assert size == max(batch_size, math.ceil(n_items / (max_tasks // approaches)))  # grown no more than needed


def test_batch_plan_edge_cases() -> None:
    assert batch_plan(0, ["rag"], 8, 1024) == []
    assert batch_plan(5, [], 8, 1024) == []
    with pytest.raises(ValueError, match=r"3 approaches need at least 3 mapped tasks, over the limit of 2 "
                                         r"\(\[core\] max_map_length\)"):
        batch_plan(5, ["rag", "finetune", "hybrid"], 8, 2)
    with pytest.raises(ValueError, match="batch_size=0"):
        batch_plan(5, ["rag"], 0, 1024)


# --- Bedrock model ids --------------------------------------------------------------------------------------------

GOOD_IDS = [
    "amazon.nova-pro-v1:0",
    "us.meta.llama3-1-8b-instruct-v1:0",
    "anthropic.claude-3-5-haiku-20241022-v1:0",
    "mistral.mistral-large-2407-v1:0",
    "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-1-8b-instruct-v1:0",
    "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
    "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcdef123456",
    "arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:provisioned-model/abcdef123456",
]
BAD_IDS = ["", "a b", "amazon.nova-pro-v1:0\n", "Amazon.Nova", "-x", "x" * (MODEL_ID_MAX_LENGTH + 1),
           "arn:aws:s3:::bucket/key", "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/a/b",
           "{{ var.value.secret }}", "../../etc", "amazon.nova;rm -rf"]


@pytest.mark.parametrize("model_id", GOOD_IDS)
def test_model_ids_and_arns_are_accepted_by_code_and_schema(model_id: str) -> None:
    assert model_id_problems([model_id]) == []
    jsonschema.validate(model_id, {"type": "string", "maxLength": MODEL_ID_MAX_LENGTH, "pattern": MODEL_ID_PATTERN})


@pytest.mark.parametrize("model_id", BAD_IDS, ids=range(len(BAD_IDS)))
def test_anything_else_is_refused_by_code_and_schema(model_id: str) -> None:
    [problem] = model_id_problems(["amazon.nova-pro-v1:0", model_id])
    assert problem.startswith("judge_models[1]: ")
    if model_id.endswith("\n"):  # JSON schema's "$" (Python re.search) lets a trailing newline pass: code does not
        return
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(model_id, {"type": "string", "maxLength": MODEL_ID_MAX_LENGTH, "pattern": MODEL_ID_PATTERN})


def test_model_id_list_problems() -> None:
    assert model_id_problems([]) == ["judge_models: expected a non-empty list of Bedrock model ids, got []"]
    assert model_id_problems("amazon.nova-pro-v1:0")[0].startswith("judge_models: expected a non-empty list")
    assert model_id_problems(["amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0"]) == [
        "judge_models[1]: 'amazon.nova-pro-v1:0' is listed twice; each judge once"]
    assert model_id_problems([3]) == ["judge_models[0]: expected a Bedrock model id (a string), got int"]


# --- load_qa: where it may read, how much -------------------------------------------------------------------------


def test_default_test_set_still_loads() -> None:
    from tailor.config import load_settings

    assert len(load_qa(load_settings(env={}).qa.test_set).items) == 45


@pytest.mark.parametrize("reference", ["../pyproject.toml", "/etc/passwd", "/dev/zero", "data/../../README.md"])
def test_load_qa_refuses_paths_outside_include(reference: str) -> None:
    with pytest.raises(QADatasetError, match=r"outside .*include; local files are read under"):
        load_qa(reference)


def test_load_qa_refuses_a_directory() -> None:
    with pytest.raises(QADatasetError, match="is not a regular file"):
        load_qa("data/qa")


def test_load_qa_s3_bucket_and_size_rules(tmp_path: Path) -> None:
    s3 = mock.MagicMock()
    with pytest.raises(QADatasetError, match=r"^s3://elsewhere/qa\.json: not in the bake-off bucket tailor"):
        load_qa("s3://elsewhere/qa.json", s3, bucket="tailor")
    s3.get_object.assert_not_called()
    body = mock.MagicMock()
    s3.get_object.return_value = {"Body": body, "ContentLength": 51 * 1024 * 1024}
    with pytest.raises(QADatasetError, match=r"^s3://tailor/qa\.json: 53477376 bytes, over the read limit of 52428800"):
        load_qa("s3://tailor/qa.json", s3, bucket="tailor")
    body.read.assert_not_called()
    error = type("NoSuchKey", (Exception,), {"response": {"Error": {"Code": "NoSuchKey"}}})
    s3.get_object.side_effect = error()
    with pytest.raises(QADatasetError, match=r"^s3://tailor/qa\.json: no such object: QA file not found"):
        load_qa("s3://tailor/qa.json", s3, bucket="tailor")
