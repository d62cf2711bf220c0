"""Unit tests of tailor.catalog: one test per validation rule, the accepted variants, the API and the CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.stack import REPO as REPO_ROOT
from tailor.catalog import (
    DEFAULT_MAX_BYTES,
    MAX_ISSUES,
    SECTIONS,
    Catalog,
    CatalogIssue,
    main,
    parse_catalog,
    validate_file,
)
from tailor.exceptions import CatalogValidationError
from tests.conftest import SAMPLE_CATALOG


def product_text(name: str, *, order: tuple[str, ...] = SECTIONS, **overrides: str | None) -> str:
    """Text of one product: each section says "<name> <section> text" unless overridden (None drops it)."""
    lines = [f"Name: {name}"]
    for header in order:
        text = overrides.get(header, f"{name} {header.lower()} text.")
        if text is not None:
            lines.append(f"{header}: {text}")
    return "\n".join(lines) + "\n"


def catalog_bytes(*products: str) -> bytes:
    return "\n".join(products).encode("utf-8")


def issues_of(data: bytes, **kwargs: int) -> list[CatalogIssue]:
    with pytest.raises(CatalogValidationError) as caught:
        parse_catalog(data, "catalog.txt", **kwargs)
    return caught.value.issues


def only_issue(data: bytes, **kwargs: int) -> CatalogIssue:
    issues = issues_of(data, **kwargs)
    assert len(issues) == 1, issues
    return issues[0]


VALID = catalog_bytes(product_text("Vortex Mixer"), product_text("Fjord Press"))


# --- accepted inputs -------------------------------------------------------------------------------------------


def test_valid_catalog_parses_every_section() -> None:
    catalog = parse_catalog(VALID, "catalog.txt")
    assert [product.name for product in catalog.products] == ["Vortex Mixer", "Fjord Press"]
    mixer = catalog.product("Vortex Mixer")
    assert mixer.line == 1
    assert mixer.description == "Vortex Mixer description text."
    assert mixer.safety_instructions == "Vortex Mixer safety_instructions text."
    assert mixer.section("Operation") == mixer.operation
    assert catalog.product("Fjord Press").line == 7


def test_multiline_sections_keep_inner_newlines_and_strip_trailing_whitespace() -> None:
    text = (
        "Name:   Vortex Mixer  \n"
        "Description:\n"
        "First line.   \n"
        "\n"
        "Second line.\n"
        "Safety_instructions: Keep clear.\n"
        "Warning: keep hands clear\n"
        "Note: see page 2\n"
        "Configuration: 400 V\n"
        "Operation: 1. Start.\n"
        "2. Stop.\n\n\n"
    )
    product = parse_catalog(text.encode(), "catalog.txt").products[0]
    assert product.name == "Vortex Mixer"
    assert product.description == "First line.\n\nSecond line."
    assert product.safety_instructions == "Keep clear.\nWarning: keep hands clear\nNote: see page 2"
    assert product.operation == "1. Start.\n2. Stop."


def test_utf8_bom_is_accepted_and_stripped() -> None:
    catalog = parse_catalog(b"\xef\xbb\xbf" + VALID, "catalog.txt")
    assert catalog.products[0].name == "Vortex Mixer"


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_windows_and_old_mac_line_endings_are_accepted(newline: str) -> None:
    catalog = parse_catalog(VALID.decode().replace("\n", newline).encode(), "catalog.txt")
    assert [product.name for product in catalog.products] == ["Vortex Mixer", "Fjord Press"]
    assert "\r" not in catalog.products[0].description


def test_sections_in_shuffled_order_are_accepted() -> None:
    shuffled = ("Operation", "Configuration", "Description", "Safety_instructions")
    product = parse_catalog(catalog_bytes(product_text("Vortex Mixer", order=shuffled)), "c.txt").products[0]
    assert product.configuration == "Vortex Mixer configuration text."


def test_leading_blank_lines_are_not_a_preamble() -> None:
    assert len(parse_catalog(b"\n\n   \n" + VALID, "catalog.txt").products) == 2


# --- rules ----------------------------------------------------------------------------------------------------


def test_oversize() -> None:
    issue = only_issue(VALID, max_bytes=10)
    assert (issue.rule, issue.line) == ("oversize", None)
    assert str(len(VALID)) in issue.message and "10" in issue.message and "configurable" in issue.message


@pytest.mark.parametrize("data", [b"", b"  \n\t\r\n", b"\xef\xbb\xbf\n"])
def test_empty(data: bytes) -> None:
    issue = only_issue(data)
    assert (issue.rule, issue.line) == ("empty", None)
    assert "empty" in issue.message and "Name:" in issue.message


def test_binary_nul_byte() -> None:
    issue = only_issue(VALID + b"Name: X\0\n")
    assert (issue.rule, issue.line) == ("binary", 12)
    assert "binary content, expected a UTF-8 text file" in issue.message
    assert f"byte offset {len(VALID) + 7}" in issue.message


def test_binary_control_characters() -> None:
    issue = only_issue(VALID + b"\x01\x02\x1b" * 10)
    assert (issue.rule, issue.line) == ("binary", None)
    assert "binary content, expected a UTF-8 text file" in issue.message


def test_a_few_control_characters_are_tolerated() -> None:
    data = VALID.replace(b"Fjord Press description", b"Fjord Press\x0c description")
    assert parse_catalog(data, "catalog.txt").products[1].description.startswith("Fjord Press\x0c")


def test_encoding_invalid_utf8_reports_line_and_offset() -> None:
    data = b"Name: Vortex Mixer\nDescription: caf\xe9\n"
    issue = only_issue(data)
    assert (issue.rule, issue.line) == ("encoding", 2)
    assert "byte offset 35" in issue.message and "UTF-8" in issue.message


def test_encoding_offset_counts_the_bom() -> None:
    issue = only_issue(b"\xef\xbb\xbfName: X\n\xff")
    assert (issue.rule, issue.line) == ("encoding", 2)
    assert "byte offset 11" in issue.message


@pytest.mark.parametrize("codec,bom", [("utf-16-le", "FF FE"), ("utf-16-be", "FE FF")])
def test_encoding_utf16_is_named(codec: str, bom: str) -> None:
    issue = only_issue("\ufeff".encode(codec) + VALID.decode().encode(codec))
    assert (issue.rule, issue.line) == ("encoding", None)
    assert "UTF-16" in issue.message and bom in issue.message and "UTF-8" in issue.message


@pytest.mark.parametrize("codec,bom", [("utf-32-le", "FF FE 00 00"), ("utf-32-be", "00 00 FE FF")])
def test_encoding_utf32_is_not_called_utf16(codec: str, bom: str) -> None:
    issue = only_issue("\ufeff".encode(codec) + VALID.decode().encode(codec))
    assert (issue.rule, issue.line) == ("encoding", None)
    assert "UTF-32" in issue.message and "UTF-16" not in issue.message and bom in issue.message


@pytest.mark.parametrize("codec,named", [("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32-le", "UTF-32")])
def test_encoding_without_bom_is_named_not_called_binary(codec: str, named: str) -> None:
    issue = only_issue(VALID.decode().encode(codec))
    assert (issue.rule, issue.line) == ("encoding", None)
    assert f"looks {named} encoded without a byte-order mark" in issue.message


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"])
def test_line_numbers_are_right_for_every_line_ending(newline: str) -> None:
    text = "Name: Vortex Mixer\nDescription: ok\nSafety_instructions: ok\nConfiguration: ok\nOperation: caf\udcff\n"
    data = text.replace("\n", newline).encode("utf-8", "surrogateescape")
    assert only_issue(data).line == 5  # the invalid byte is on line 5 whatever ends the lines
    nul = text.replace("caf\udcff", "caf\x00").replace("\n", newline).encode()
    assert only_issue(nul).line == 5
    missing = catalog_bytes(product_text("A"), product_text("B", Operation=None)).decode().replace("\n", newline)
    assert only_issue(missing.encode()).line == 7


# --- product names ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first,second",
    [("Vortex Mixer", "vortex  MIXER"), ("Vortex Mixer", "Vortex\u200b Mixer"), ("Vortex Mixer", "\u200eVortex Mixer"),
     ("Caf\u00e9 Grinder", "Cafe\u0301 Grinder"), ("Stra\u00dfe Press", "STRASSE Press"),
     ("Mixer\u202eA", "MixerA")],
    ids=["case-spacing", "zero-width-space", "lrm-mark", "nfc-vs-nfd", "casefold", "bidi-override"],
)
def test_names_that_look_the_same_are_the_same_product(first: str, second: str) -> None:
    issue = only_issue(catalog_bytes(product_text(first), product_text(second)))
    assert (issue.rule, issue.line) == ("duplicate_product", 7)
    assert "invisible characters" in issue.message


def test_names_are_stored_in_nfc_and_found_in_any_spelling() -> None:
    catalog = parse_catalog(catalog_bytes(product_text("Cafe\u0301 Grinder")), "c.txt")
    assert catalog.products[0].name == "Caf\u00e9 Grinder"
    assert catalog.product("CAF\u00c9\u200b grinder") is catalog.products[0]


@pytest.mark.parametrize(
    "name,says",
    [("\u200b", "is empty once invisible characters"), ("\u200b\u200d\u2066\u2069", "is empty once invisible"),
     ("Mixer\x07 Bell", "contains control characters"), ("Mixer \ufffd", "contains U+FFFD"),
     ("M" * 201, "is 201 characters long, over the limit of 200")],
    ids=["zero-width-only", "format-only", "control", "replacement-char", "too-long"],
)
def test_unusable_names_are_rejected(name: str, says: str) -> None:
    padding = [product_text(f"Padding {i}") for i in range(3)]  # a single control char is not "binary content"
    issue = only_issue(catalog_bytes(product_text(name), *padding))
    assert (issue.rule, issue.line) == ("invalid_name", 1)
    assert says in issue.message


def test_name_length_limit_is_configurable() -> None:
    data = catalog_bytes(product_text("M" * 300))
    assert parse_catalog(data, "c.txt", max_name_chars=300).products[0].name == "M" * 300
    assert only_issue(data, max_name_chars=299).rule == "invalid_name"


def test_non_latin_names_are_distinct_products() -> None:
    names = ["Смеситель VM-200", "ミキサー VM-200", "Αναμικτήρας VM-200", "混合器 VM-200"]
    catalog = parse_catalog(catalog_bytes(*(product_text(n) for n in names)), "c.txt")
    assert [p.name for p in catalog.products] == names


# --- pathological inputs: bounded time and memory ------------------------------------------------------------------


PATHOLOGICAL = {
    "one-long-line": lambda n: b"x" * n,
    "label-lines": lambda n: b"Name: A\n" + b"Some Label: text\n" * (n // 17),
    "lookalike-labels": lambda n: b"".join(b"Safety_instruction%d:\n" % i for i in range(n // 20)),
    "names-only": lambda n: b"".join(b"Name: P%d\n" % i for i in range(n // 9)),
    "empty-sections": lambda n: b"Name: A\n" + b"Description:\n" * (n // 13),
    "colons": lambda n: b":" * n,
}


@pytest.mark.parametrize("shape", sorted(PATHOLOGICAL))
def test_five_megabyte_pathological_file_is_answered_in_bounded_memory(shape: str) -> None:
    """A 5 MB file of any shape is answered quickly (about a second) with a capped report, not millions of issues."""
    import tracemalloc

    data = PATHOLOGICAL[shape](DEFAULT_MAX_BYTES)[:DEFAULT_MAX_BYTES]
    assert len(data) > DEFAULT_MAX_BYTES - 64
    tracemalloc.start()
    try:
        try:
            parse_catalog(data, "big.txt")
        except CatalogValidationError as error:
            assert len(error.issues) <= MAX_ISSUES + 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 1024 * 1024, f"{shape}: peak {peak / 1e6:.0f} MB"


def test_preamble() -> None:
    issue = only_issue(b"Industrial catalog 2024\n\n" + VALID)
    assert (issue.rule, issue.line) == ("preamble", 1)
    assert '"Name:"' in issue.message


def test_preamble_without_any_product() -> None:
    issue = only_issue(b"\nDescription: a catalog without products\n")
    assert (issue.rule, issue.line) == ("preamble", 2)
    assert "no product found" in issue.message


@pytest.mark.parametrize(
    "line",
    ["Safety Instructions:", "safety_instructions: Keep clear.", "Specs_sheet: 400 V", "Notes:", "DESCRIPTION: loud",
     "Electrical Safety:", "Table of Contents:", "Introduction:", "Maintenance and Troubleshooting:",
     "  Operation: indented", "Step 1: open the valve", "Warning: 400 V inside"],
)
def test_any_other_label_line_is_content_of_its_section(line: str) -> None:
    """Customers' manuals carry sub-headings in every section: only the five headers at column 0 are structure."""
    data = catalog_bytes(product_text("Vortex Mixer") + line + "\nmore text\n")
    product = parse_catalog(data, "catalog.txt").products[0]
    assert product.operation == f"Vortex Mixer operation text.\n{line}\nmore text"
    assert f"{line}\nmore text" in product.to_document()


def test_subheadings_in_every_section_are_kept_verbatim() -> None:
    text = (
        "Name: Vortex Mixer\n"
        "Description:\nTable of Contents:\n1. Introduction\n2. System Overview\nIntroduction:\nA mixer.\n"
        "Safety_instructions:\nGeneral Safety Precautions:\nWear gloves.\nElectrical Safety:\n400 V inside.\n"
        "Configuration:\nTechnical Specifications:\nRated power: 15 kW\nSupply voltage: 400 V\n"
        "Operation:\nStart-Up Procedure:\n1. Close the guard.\n2. Press START.\nShutdown Procedure:\n1. Stop.\n"
    )
    product = parse_catalog(text.encode(), "catalog.txt").products[0]
    assert product.description == "Table of Contents:\n1. Introduction\n2. System Overview\nIntroduction:\nA mixer."
    assert product.safety_instructions == "General Safety Precautions:\nWear gloves.\nElectrical Safety:\n400 V inside."
    assert product.configuration == "Technical Specifications:\nRated power: 15 kW\nSupply voltage: 400 V"
    assert product.operation.startswith("Start-Up Procedure:\n1. Close") and product.operation.endswith("1. Stop.")


@pytest.mark.parametrize(
    "line,header",
    [("Safety Instructions: Keep clear.", "Safety_instructions"), ("safety_instruction: Keep clear.",
      "Safety_instructions"), ("  Safety_instructions: Keep clear.", "Safety_instructions"),
     ("SAFETY-INSTRUCTIONS:", "Safety_instructions"), ("Configuratoin: 400 V", "Configuration")],
)
def test_misspelt_header_is_named_where_it_explains_a_missing_section(line: str, header: str) -> None:
    without = tuple(h for h in SECTIONS if h != header)
    data = catalog_bytes(product_text("Vortex Mixer", order=without) + line + "\n")
    issue = only_issue(data)
    assert (issue.rule, issue.line) == ("missing_section", 1)
    assert f'product "Vortex Mixer" has no {header} section' in issue.message
    assert f'line 5 "{line.strip() if not line.startswith(" ") else line}" looks like a misspelt {header} header' \
        in issue.message
    assert ("headers start at column 0" in issue.message) == line.startswith(" ")


def test_lookalike_label_is_not_reported_when_no_section_is_missing() -> None:
    data = catalog_bytes(product_text("Vortex Mixer") + "Safety Instructions: see the Safety_instructions above.\n")
    assert parse_catalog(data, "catalog.txt").products[0].operation.endswith("see the Safety_instructions above.")


def test_misspelt_name_header_explains_the_duplicate_sections() -> None:
    data = catalog_bytes(product_text("Vortex Mixer") + "name: Fjord Press\n" + product_text("X").split("\n", 1)[1])
    issues = issues_of(data)
    assert [(i.rule, i.line) for i in issues] == [("duplicate_section", line) for line in (7, 8, 9, 10)]
    assert 'line 6 "name: Fjord Press" looks like a misspelt Name header' in issues[0].message


def test_missing_section() -> None:
    data = catalog_bytes(product_text("Fjord Press"), product_text("Vortex Mixer", Safety_instructions=None))
    issue = only_issue(data)
    assert (issue.rule, issue.line) == ("missing_section", 7)
    assert issue.message == (
        'product "Vortex Mixer" has no Safety_instructions section '
        "(each product needs Name, Description, Safety_instructions, Configuration, Operation)"
    )
    assert str(issue) == f"catalog.txt line 7: {issue.message}"


def test_empty_section() -> None:
    issue = only_issue(catalog_bytes(product_text("Vortex Mixer", Configuration="   ")))
    assert (issue.rule, issue.line) == ("empty_section", 4)
    assert '"Vortex Mixer"' in issue.message and "Configuration" in issue.message


def test_empty_name() -> None:
    issue = only_issue(catalog_bytes(product_text("Vortex Mixer"), product_text("")))
    assert (issue.rule, issue.line) == ("empty_section", 7)
    assert '"Name:"' in issue.message


def test_duplicate_section() -> None:
    data = catalog_bytes(product_text("Vortex Mixer") + "Operation: again\n")
    issue = only_issue(data)
    assert (issue.rule, issue.line) == ("duplicate_section", 6)
    assert '"Vortex Mixer"' in issue.message and "Operation" in issue.message and "line 5" in issue.message


def test_duplicate_product_ignores_case_and_spacing() -> None:
    issue = only_issue(catalog_bytes(product_text("Vortex Mixer"), product_text("vortex   MIXER")))
    assert (issue.rule, issue.line) == ("duplicate_product", 7)
    assert '"Vortex Mixer"' in issue.message and "line 1" in issue.message


def test_stray_text_after_name() -> None:
    data = b"Name: Vortex Mixer\nA great mixer.\nstill stray\n" + product_text("X").split("\n", 1)[1].encode()
    issue = only_issue(data)
    assert (issue.rule, issue.line) == ("stray_text", 2)
    assert '"Vortex Mixer"' in issue.message


# --- several issues -------------------------------------------------------------------------------------------


def test_all_issues_are_reported_at_once_in_line_order() -> None:
    data = catalog_bytes(
        product_text("Vortex Mixer", Operation=None),
        product_text("Fjord Press", Description=""),
        product_text("VORTEX MIXER"),
    )
    with pytest.raises(CatalogValidationError) as caught:
        parse_catalog(data, "catalog.txt")
    found = [(issue.rule, issue.line) for issue in caught.value.issues]
    assert found == [("missing_section", 1), ("empty_section", 7), ("duplicate_product", 12)]
    assert str(caught.value).splitlines() == [str(issue) for issue in caught.value.issues]


def test_issues_are_capped() -> None:
    data = catalog_bytes(*(product_text(f"P{i}", Operation=None) for i in range(MAX_ISSUES + 7)))
    issues = issues_of(data)
    assert len(issues) == MAX_ISSUES + 1
    assert (issues[-1].rule, issues[-1].line) == ("too_many_issues", None)
    assert issues[-1].message == "... and 7 more"


# --- API ------------------------------------------------------------------------------------------------------


def test_to_document_names_the_product_before_every_section() -> None:
    document = parse_catalog(VALID, "catalog.txt").products[0].to_document()
    assert document.startswith("Product: Vortex Mixer\n")
    for header in SECTIONS:
        title = header.replace("_", " ")
        assert f"Vortex Mixer - {title}:\nVortex Mixer {header.lower()} text." in document


def test_version_is_the_sha256_of_the_raw_bytes() -> None:
    catalog = parse_catalog(b"\xef\xbb\xbf" + VALID, "catalog.txt")
    assert catalog.sha256 == hashlib.sha256(b"\xef\xbb\xbf" + VALID).hexdigest()
    assert catalog.version == catalog.sha256[:12]
    assert catalog.size_bytes == len(VALID) + 3


def test_product_lookup_and_missing_product() -> None:
    catalog = parse_catalog(VALID, "catalog.txt")
    assert catalog.product("fjord  press").name == "Fjord Press"
    with pytest.raises(KeyError, match="Vortex Mixer"):
        catalog.product("Nope")
    with pytest.raises(KeyError):
        catalog.products[0].section("Specs")


def test_dataclasses_are_frozen() -> None:
    catalog = parse_catalog(VALID, "catalog.txt")
    with pytest.raises(AttributeError):
        catalog.products[0].name = "x"  # type: ignore[misc]
    assert isinstance(catalog, Catalog)


def test_issue_str_without_line() -> None:
    assert str(CatalogIssue("c.txt", None, "empty", "file is empty")) == "c.txt: file is empty"


def test_validate_file_rejects_oversize_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "catalog.txt"
    path.write_bytes(VALID)
    assert validate_file(path).source == str(path)
    with pytest.raises(CatalogValidationError) as caught:
        validate_file(path, max_bytes=5)
    assert caught.value.issues[0].rule == "oversize"
    assert DEFAULT_MAX_BYTES == 5 * 1024 * 1024


def test_sample_catalog_is_valid() -> None:
    catalog = validate_file(SAMPLE_CATALOG)
    assert len(catalog.products) == 15


# --- CLI ------------------------------------------------------------------------------------------------------


def test_main_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "catalog.txt"
    path.write_bytes(VALID)
    assert main(["validate", str(path)]) == 0
    version = hashlib.sha256(VALID).hexdigest()[:12]
    assert capsys.readouterr().out == f"{path}: valid, 2 products, version {version}\n"


def test_main_invalid_prints_every_issue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "catalog.txt"
    path.write_bytes(catalog_bytes(product_text("A", Operation=None), product_text("B", Description=None)))
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f'{path} line 1: product "A" has no Operation section '
        "(each product needs Name, Description, Safety_instructions, Configuration, Operation)",
        f'{path} line 6: product "B" has no Description section '
        "(each product needs Name, Description, Safety_instructions, Configuration, Operation)",
    ]


def test_main_max_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "catalog.txt"
    path.write_bytes(VALID)
    assert main(["validate", str(path), "--max-bytes", "100"]) == 2
    assert "over the limit of 100 bytes" in capsys.readouterr().err


def test_main_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.txt"
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}: no such file\n"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "include")}
    return subprocess.run(
        [sys.executable, "-m", "tailor.catalog", "validate", *args],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=False,
    )


def test_cli_subprocess(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_bytes(VALID)
    bad.write_bytes(b"Notes:\n" + VALID)  # text before the first product
    result = run_cli(str(good))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"{good}: valid, 2 products, version ")
    result = run_cli(str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith(f'{bad} line 1: text before the first "Name:" line')
    result = run_cli(str(tmp_path / "missing.txt"))
    assert result.returncode == 2 and "no such file" in result.stderr
