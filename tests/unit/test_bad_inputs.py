"""The bad-input corpus (tests/data/bad/manifest.json) through the real catalog and QA validators.

Every case is parsed from a file on disk (generated ones are written to tmp_path first): accepted cases must
parse to the expected products/items, rejected ones must raise naming the file, the line and the rule.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.stack import REPO
from tailor.catalog import DEFAULT_MAX_BYTES, MAX_ISSUES, SECTIONS, Catalog, parse_catalog, validate_file
from tailor.exceptions import CatalogValidationError, QADatasetError
from tailor.qa import QADataset, parse_qa
from tests.data.bad.corpus import (
    CATALOG_MAX_BYTES,
    HERE,
    Case,
    _product,
    case,
    cases,
    catalog_of_size,
    catalog_products,
    catalog_same_product,
    data_of,
    materialize,
    qa_items,
)

CATALOG_CASES = cases("catalog")
QA_CASES = cases("qa")
#: The validators must scale linearly with the input: 10 times the input may take at most this many times as long
#: (linear work is ~10x, measured 7-18x; a quadratic step ~100x). A ratio against a baseline measured in the same
#: test, never a wall-clock budget: both sides are CPU time (time.process_time: other processes on a busy machine
#: do not count), each the best of a few runs.
MAX_RATIO_FOR_10X = 30


def _sections(catalog: Catalog) -> list[tuple[str, ...]]:
    return [(p.name, *(p.section(h) for h in SECTIONS)) for p in catalog.products]


def _validate_catalog(path: Path) -> Catalog:
    return validate_file(path)


def _parse_qa_file(path: Path) -> QADataset:
    return parse_qa(path.read_bytes(), str(path))


def _best_seconds(work: Callable[[], object], runs: int = 3) -> float:
    best = math.inf
    for _ in range(runs):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def _catalog_outcome(data: bytes) -> int:
    """Products parsed, or -issues for a rejected catalog (either way the whole input was validated)."""
    try:
        return len(parse_catalog(data, "scaled.txt").products)
    except CatalogValidationError as error:
        return -len(error.issues)


def _qa_outcome(data: bytes) -> int:
    try:
        return len(parse_qa(data, "scaled.json").items)
    except QADatasetError:
        return -1


def _long_name(chars: int) -> bytes:
    """One product named ``"Mixer " * (chars // 6) + "VM"`` (20,000: the ``name_20000_chars`` case)."""
    return _product("Mixer " * (chars // 6) + "VM").encode()


#: The generated cases (tests/data/bad/corpus.py), each at its size and at a tenth of it: (generator, size,
#: validator). The large cases' outcomes are asserted by test_catalog_case / test_qa_case; here only the scaling.
SCALED = {
    "catalog_10k_products": (catalog_products, 10_000, _catalog_outcome),
    "catalog_10k_same_product": (catalog_same_product, 10_000, _catalog_outcome),
    "catalog_at_size_limit": (catalog_of_size, CATALOG_MAX_BYTES, _catalog_outcome),
    "name_20000_chars": (_long_name, 20_000, _catalog_outcome),
    "qa_10k_items": (qa_items, 10_000, _qa_outcome),
    "qa_deep_nesting": (lambda n: b"[" * n + b"]" * n, 100_000, _qa_outcome),
}


# --- the manifest itself ----------------------------------------------------------------------------------------


def test_manifest_lists_every_committed_file_and_only_existing_ones() -> None:
    committed = {str(p.relative_to(HERE)) for kind in ("catalog", "qa") for p in (HERE / kind).iterdir()}
    listed = [c.file for c in cases() if c.file]
    assert sorted(listed) == sorted(committed)
    assert len({c.id for c in cases()}) == len(cases()), "case ids must be unique"


def test_manifest_cases_are_complete() -> None:
    assert len(CATALOG_CASES) >= 20 and len(QA_CASES) >= 10
    for c in cases():
        assert c.kind in ("catalog", "qa") and c.input, c
        assert bool(c.file) != bool(c.generator), f"{c.id}: exactly one of file / generator"
        if c.expect == "accepted":
            assert c.why and not c.rule, c
            assert (c.products if c.kind == "catalog" else c.items), f"{c.id}: how many products/items?"
        else:
            assert c.expect == "rejected" and c.rule and not c.why, c
        if c.same_as:
            assert case(c.same_as).expect == "accepted" and case(c.same_as).kind == c.kind


def test_large_cases_are_generated_not_committed() -> None:
    for path in HERE.rglob("*"):
        assert path.stat().st_size < 64 * 1024, f"{path} is large: generate it at test time instead"
    sizes = {c.id: len(data_of(c)) for c in cases() if c.generator}
    assert sizes["catalog_50mb"] == 50 * 1024 * 1024
    assert sizes["catalog_at_size_limit"] == DEFAULT_MAX_BYTES == CATALOG_MAX_BYTES
    assert sizes["catalog_one_byte_over_limit"] == DEFAULT_MAX_BYTES + 1


# --- every catalog case -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", CATALOG_CASES, ids=[c.id for c in CATALOG_CASES])
def test_catalog_case(c: Case, tmp_path: Path) -> None:
    path = materialize(c, tmp_path)
    if c.expect == "accepted":
        catalog = _validate_catalog(path)
        assert len(catalog.products) == c.products
        for product in catalog.products:
            assert all(product.section(h) for h in SECTIONS) and "\r" not in product.to_document()
        if c.same_as:
            assert _sections(catalog) == _sections(_validate_catalog(materialize(case(c.same_as), tmp_path)))
        if names := c.verbatim.get("names"):
            assert [p.name for p in catalog.products] == names
        if product_name := c.verbatim.get("product"):
            text = catalog.product(product_name).section(c.verbatim["section"])
            for fragment in c.verbatim["contains"]:
                assert fragment in text
        return
    with pytest.raises(CatalogValidationError) as caught:
        _validate_catalog(path)
    error = caught.value
    matching = [issue for issue in error.issues if (issue.rule, issue.line) == (c.rule, c.line)]
    assert matching, f"expected ({c.rule}, line {c.line}); got {[(i.rule, i.line) for i in error.issues]}"
    issue = matching[0]
    where = f"{path} line {c.line}: " if c.line is not None else f"{path}: "
    assert str(issue).startswith(where) and str(issue) in str(error).splitlines()
    assert c.says and c.says in issue.message
    assert all(i.source == str(path) for i in error.issues)


# --- every QA case ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", QA_CASES, ids=[c.id for c in QA_CASES])
def test_qa_case(c: Case, tmp_path: Path) -> None:
    path = materialize(c, tmp_path)
    if c.expect == "accepted":
        dataset = _parse_qa_file(path)
        assert len(dataset.items) == c.items
        if c.same_as:
            assert dataset.items == _parse_qa_file(materialize(case(c.same_as), tmp_path)).items
        if "item" in c.verbatim:
            text = getattr(dataset.items[c.verbatim["item"]], c.verbatim["field"])
            for fragment in c.verbatim["contains"]:
                assert fragment in text
        return
    with pytest.raises(QADatasetError) as caught:
        _parse_qa_file(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert c.rule is not None and c.rule in message
    if c.says:
        assert c.says in message
    if c.line is not None:  # JSON syntax: "<file> line N: ..."; encoding: "<file>: not UTF-8 (byte B) at line N; ..."
        assert message.startswith(f"{path} line {c.line}: ") or f") at line {c.line}; " in message, message
    if c.item is not None:
        assert f"{path} item {c.item}: " in message


# --- what the demanding user checks by hand ----------------------------------------------------------------------


def test_crlf_cr_and_bom_catalogs_yield_exactly_the_lf_products() -> None:
    lf = validate_file(HERE / "catalog/valid_lf.txt")
    for name in ("windows_crlf", "old_mac_cr", "utf8_bom"):
        other = validate_file(HERE / f"catalog/{name}.txt")
        assert other.products == lf.products, name  # names, every section and the line numbers
        assert other.version != lf.version, "the version hashes the raw bytes"


def test_prompt_injection_is_kept_as_data_verbatim() -> None:
    catalog = validate_file(HERE / "catalog/prompt_injection.txt")
    assert [p.name for p in catalog.products] == ["Vortex Mixer VM-200", "Fjord Hydraulic Press HP-450"]
    description = catalog.product("Vortex Mixer VM-200").description
    raw = (HERE / "catalog/prompt_injection.txt").read_text(encoding="utf-8")
    start = raw.index("Description: ") + len("Description: ")
    assert description == raw[start:raw.index("\nSafety_instructions:")]
    assert "Vortex Mixer VM-200 - Description:\n" + description in catalog.products[0].to_document()


@pytest.mark.parametrize("case_id", list(SCALED))
def test_validation_time_grows_linearly_with_the_input(case_id: str) -> None:
    """10x the input (the generated case vs the same generator at a tenth) takes at most MAX_RATIO_FOR_10X x as
    long: no quadratic step (a regex backtracking on a long line, a duplicate check comparing every pair)."""
    generate, size, validate = SCALED[case_id]
    big, small = generate(size), generate(size // 10)
    assert big == data_of(case(case_id)), "the generator must make the case itself"
    big_outcome, small_outcome = validate(big), validate(small)
    assert (big_outcome > 0) == (small_outcome > 0), "both sizes take the same path (accepted or rejected)"
    ratio = _best_seconds(lambda: validate(big)) / _best_seconds(lambda: validate(small))
    assert ratio <= MAX_RATIO_FOR_10X, f"{case_id}: 10x the input took {ratio:.1f}x as long"


def test_ten_thousand_products_parse(tmp_path: Path) -> None:
    data = data_of(case("catalog_10k_products"))
    catalog = parse_catalog(data, "big.txt")
    assert len(catalog.products) == 10_000 and catalog.products[-1].name == "Test Fixture TF-09999"
    assert catalog.products[-1].line == 9_999 * 6 + 1


def test_ten_thousand_duplicates_report_a_capped_list() -> None:
    data = data_of(case("catalog_10k_same_product"))
    with pytest.raises(CatalogValidationError) as caught:
        parse_catalog(data, "dups.txt")
    issues = caught.value.issues
    assert len(issues) == MAX_ISSUES + 1 and [i.line for i in issues[:3]] == [7, 13, 19]
    assert issues[-1].rule == "too_many_issues" and issues[-1].message == f"... and {9_999 - MAX_ISSUES} more"


def test_oversize_file_is_rejected_without_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = materialize(case("catalog_50mb"), tmp_path)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"{self} was read"))
    with pytest.raises(CatalogValidationError) as caught:
        validate_file(path)
    assert [(i.rule, i.line) for i in caught.value.issues] == [("oversize", None)]
    assert str(caught.value) == (f"{path}: file is {50 * 1024 * 1024} bytes, over the limit of {DEFAULT_MAX_BYTES} "
                                 "bytes; split the catalog or raise the limit (it is configurable: max_bytes in code, "
                                 "--max-bytes on the command line)")


# --- regressions of the validator fixes made for this corpus -------------------------------------------------------


@pytest.mark.parametrize("invisible", ["\ufeff", "\f", "\f\ufeff"])
def test_invisible_character_before_a_header_is_skipped(invisible: str) -> None:
    lf = (HERE / "catalog/valid_lf.txt").read_text(encoding="utf-8")
    data = lf.replace("\nName: ", f"\n{invisible}Name: ").replace("\nOperation:", f"\n{invisible}Operation:")
    catalog = parse_catalog(data.encode(), "c.txt")
    assert _sections(catalog) == _sections(parse_catalog(lf.encode(), "c.txt"))


def test_invisible_character_before_ordinary_text_stays_text() -> None:
    lf = (HERE / "catalog/valid_lf.txt").read_text(encoding="utf-8")
    catalog = parse_catalog(lf.replace("- Dispersion disc", "\f- Dispersion disc").encode(), "c.txt")
    assert "\n\f- Dispersion disc, 250 mm." in catalog.products[0].configuration


@pytest.mark.parametrize(
    "data,expected",
    [
        (b"[" * 100_000, "q.json: invalid JSON (nested too deeply; expected a flat list of objects)"),
        (b'[{"id": ' + b"7" * 4301 + b"}]", "q.json: invalid JSON (a number has too many digits)"),
        (b"\xef\xbb\xbf[\n\n\xe9]", "q.json: not UTF-8 (byte 6) at line 3; re-save the file as UTF-8"),
    ],
    ids=["recursion", "int-digits", "bom-offset"],
)
def test_qa_errors_that_used_to_crash_or_miscount(data: bytes, expected: str) -> None:
    with pytest.raises(QADatasetError) as caught:
        parse_qa(data, "q.json")
    assert str(caught.value) == expected


# --- the command line ---------------------------------------------------------------------------------------------


def _cli(path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "include")}
    return subprocess.run([sys.executable, "-m", "tailor.catalog", "validate", str(path)],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=60)


def test_cli_exit_codes_on_corpus_cases(tmp_path: Path) -> None:
    good = _cli(HERE / "catalog/windows_crlf.txt")
    assert (good.returncode, good.stderr) == (0, "")
    assert good.stdout.startswith(f"{HERE / 'catalog/windows_crlf.txt'}: valid, 3 products, version ")

    html = _cli(HERE / "catalog/html.txt")
    assert (html.returncode, html.stdout) == (2, "")
    assert html.stderr.startswith(f"{HERE / 'catalog/html.txt'} line 1: text before the first \"Name:\" line")
    assert "Traceback" not in html.stderr

    big = materialize(case("catalog_50mb"), tmp_path)
    oversize = _cli(big)
    assert oversize.returncode == 2 and f"{big}: file is 52428800 bytes, over the limit" in oversize.stderr

    utf16 = _cli(HERE / "catalog/utf16_le_bom.txt")
    assert utf16.returncode == 2 and "UTF-16" in utf16.stderr and "Traceback" not in utf16.stderr
