"""Unit tests of tailor.catalog: one test per validation rule, the accepted variants, the API and the CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

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

from devstack.stack import REPO as REPO_ROOT
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


def test_preamble() -> None:
    issue = only_issue(b"Industrial catalog 2024\n\n" + VALID)
    assert (issue.rule, issue.line) == ("preamble", 1)
    assert '"Name:"' in issue.message


def test_preamble_without_any_product() -> None:
    issue = only_issue(b"\nDescription: a catalog without products\n")
    assert (issue.rule, issue.line) == ("preamble", 2)
    assert "no product found" in issue.message


@pytest.mark.parametrize(
    "header,suggestion",
    [
        ("Safety Instructions:", "Safety_instructions"),
        ("safety_instructions: Keep clear.", "Safety_instructions"),
        ("Specs_sheet: 400 V", None),
        ("Notes:", None),
        ("DESCRIPTION: loud", "Description"),
    ],
)
def test_unknown_section(header: str, suggestion: str | None) -> None:
    data = catalog_bytes(product_text("Vortex Mixer") + header + "\nmore text\n")
    issue = only_issue(data)
    assert (issue.rule, issue.line) == ("unknown_section", 6)
    label = header.split(":")[0]
    assert f'"{label}:"' in issue.message and '"Vortex Mixer"' in issue.message
    if suggestion:
        assert f'did you mean "{suggestion}:"' in issue.message
    else:
        assert "did you mean" not in issue.message


def test_misspelled_header_also_leaves_the_section_missing() -> None:
    data = catalog_bytes(product_text("Vortex Mixer", Safety_instructions=None) + "Safety Instructions: Keep clear.\n")
    assert [(issue.rule, issue.line) for issue in issues_of(data)] == [("missing_section", 1), ("unknown_section", 5)]


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
    bad.write_bytes(b"Notes:\n" + VALID)
    result = run_cli(str(good))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"{good}: valid, 2 products, version ")
    result = run_cli(str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith(f'{bad} line 1: unknown section header "Notes:"')
    result = run_cli(str(tmp_path / "missing.txt"))
    assert result.returncode == 2 and "no such file" in result.stderr
