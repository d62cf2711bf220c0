"""Parse and validate a product catalog text file.

A catalog is a sequence of products. Each product starts with a ``Name: <name>`` line at column 0, followed by
the sections ``Description:``, ``Safety_instructions:``, ``Configuration:`` and ``Operation:`` in any order.
A section's text may start on its header line and continue until the next header.

:func:`parse_catalog` reports every problem at once as a :class:`~tailor.exceptions.CatalogValidationError`
whose issues carry a stable ``rule`` string. Run ``python -m tailor.catalog validate PATH`` to check a file.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tailor.exceptions import CatalogValidationError

SECTIONS = ("Description", "Safety_instructions", "Configuration", "Operation")
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
MAX_ISSUES = 50

_HEADERS = ("Name", *SECTIONS)
_HEADERS_BY_FOLDED = {header.casefold(): header for header in _HEADERS}
_HEADER_RE = re.compile(r"^([A-Za-z][A-Za-z_ ]{0,40}):(.*)$")
_NEEDS = "each product needs " + ", ".join(_HEADERS)
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = {b"\xff\xfe": "FF FE", b"\xfe\xff": "FE FF"}
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")  # category Cc except \t \n \r \f
_MAX_CONTROL_RATIO = 0.01
_INVISIBLE_LEAD = "\ufeff\f"


@dataclass(frozen=True)
class Product:
    """One product of a catalog; ``line`` is the line number of its ``Name:`` line."""

    name: str
    description: str
    safety_instructions: str
    configuration: str
    operation: str
    line: int

    def section(self, header: str) -> str:
        """Return the text of the section spelled ``header`` (e.g. ``"Safety_instructions"``)."""
        if header not in SECTIONS:
            raise KeyError(f"unknown section {header!r}; known sections: {', '.join(SECTIONS)}")
        return getattr(self, header.lower())

    def to_document(self) -> str:
        """Render a self-contained text for a search index where every section names its product."""
        parts = [f"Product: {self.name}"]
        for header in SECTIONS:
            parts.append(f"{self.name} - {header.replace('_', ' ')}:\n{self.section(header)}")
        return "\n\n".join(parts) + "\n"


@dataclass(frozen=True)
class CatalogIssue:
    """One broken rule: where (``source``, ``line``), which ``rule`` and a message saying how to fix it."""

    source: str
    line: int | None
    rule: str
    message: str

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.source}: {self.message}"
        return f"{self.source} line {self.line}: {self.message}"


@dataclass(frozen=True)
class Catalog:
    """A validated catalog with the SHA-256 and size of the raw bytes it was parsed from."""

    source: str
    products: tuple[Product, ...]
    sha256: str
    size_bytes: int

    @property
    def version(self) -> str:
        """A short content version: the first 12 hex characters of the SHA-256."""
        return self.sha256[:12]

    def product(self, name: str) -> Product:
        """Return the product called ``name`` (ignoring case and spacing); KeyError if there is none."""
        for product in self.products:
            if _name_key(product.name) == _name_key(name):
                return product
        known = ", ".join(repr(product.name) for product in self.products)
        raise KeyError(f"no product {name!r} in {self.source}; known products: {known}")


@dataclass
class _Draft:
    """A product while it is being parsed: its name, line and the raw lines of each section seen."""

    name: str
    line: int
    sections: dict[str, list[str]] = field(default_factory=dict)
    header_lines: dict[str, int] = field(default_factory=dict)
    stray_reported: bool = False

    @property
    def label(self) -> str:
        return f'product "{self.name}"' if self.name else f"the unnamed product at line {self.line}"

    def text(self, header: str) -> str:
        return "\n".join(line.rstrip() for line in self.sections[header]).strip()


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _oversize_issue(source: str, size: int, max_bytes: int) -> CatalogIssue:
    return CatalogIssue(
        source, None, "oversize",
        f"file is {size} bytes, over the limit of {max_bytes} bytes; split the catalog or raise the limit "
        "(it is configurable: max_bytes in code, --max-bytes on the command line)",
    )


def _decode(data: bytes, source: str) -> str:
    """Check the raw bytes (rules oversize excluded) and return the text with line endings normalized."""

    def fail(line: int | None, rule: str, message: str) -> CatalogValidationError:
        return CatalogValidationError([CatalogIssue(source, line, rule, message)])

    for bom, spelled in _UTF16_BOMS.items():
        if data.startswith(bom):
            raise fail(None, "encoding", f"file is UTF-16 encoded (byte-order mark {spelled}); re-save it as UTF-8")
    nul = data.find(b"\0")
    if nul >= 0:
        raise fail(_line_of(data, nul), "binary",
                   f"binary content, expected a UTF-8 text file (NUL byte at byte offset {nul})")
    skip = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = skip + error.start
        raise fail(_line_of(data, offset), "encoding",
                   f"not valid UTF-8 (byte 0x{data[offset]:02X} at byte offset {offset}); re-save the file as UTF-8")
    if not text.strip():
        raise fail(None, "empty", 'file is empty or only whitespace; expected products starting with "Name: <name>"')
    controls = len(_CONTROL_RE.findall(text))
    if controls > _MAX_CONTROL_RATIO * len(text):
        raise fail(None, "binary", "binary content, expected a UTF-8 text file "
                                   f"({controls} of {len(text)} characters are control characters)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _classify(line: str) -> tuple[str, str, bool] | None:
    """Return ``(label, rest, known)`` if ``line`` is or looks like a header, else None (ordinary content).

    Invisible characters before a header are skipped: a U+FEFF left where UTF-8 files saved with a BOM were
    concatenated, or a form feed that PDF-to-text puts before the first line of a page.
    """
    match = _HEADER_RE.match(line.lstrip(_INVISIBLE_LEAD))
    if not match:
        return None
    label, rest = match.groups()
    if label in _HEADERS:
        return label, rest, True
    folded = label.strip().replace(" ", "_").casefold()
    if "_" in label or not rest.strip() or folded in _HEADERS_BY_FOLDED:
        return label, rest, False
    return None


def _unknown_message(label: str, draft: _Draft | None) -> str:
    where = f" in {draft.label}" if draft else ""
    folded = label.strip().replace(" ", "_").casefold()
    close = difflib.get_close_matches(folded, list(_HEADERS_BY_FOLDED), n=1)
    hint = f'did you mean "{_HEADERS_BY_FOLDED[close[0]]}:"? ' if close else ""
    return (f'unknown section header "{label}:"{where}; {hint}'
            f"headers are case-sensitive and must be one of {', '.join(_HEADERS)}")


def _parse_lines(lines: list[str], source: str, issues: list[CatalogIssue]) -> list[_Draft]:
    """Split the lines into product drafts, appending structural issues found along the way."""
    drafts: list[_Draft] = []
    current: list[str] | None = None  # where content lines go; None before a product's first section
    preamble_line: int | None = None
    for lineno, line in enumerate(lines, start=1):
        draft = drafts[-1] if drafts else None
        header = _classify(line)
        if header is None:
            if current is not None:
                current.append(line)
            elif not line.strip():
                continue
            elif draft is None:
                preamble_line = preamble_line or lineno
            elif not draft.stray_reported:
                draft.stray_reported = True
                issues.append(CatalogIssue(source, lineno, "stray_text",
                              f"text after the Name line of {draft.label} belongs to no section; "
                              "put it under one of " + ", ".join(SECTIONS)))
            continue
        label, rest, known = header
        current = []  # the text under a rejected header is dropped: its issue is reported already
        if not known:
            issues.append(CatalogIssue(source, lineno, "unknown_section", _unknown_message(label, draft)))
        elif label == "Name":
            drafts.append(_Draft(rest.strip(), lineno))
            current = None
        elif draft is None:
            preamble_line = preamble_line or lineno
        elif label in draft.sections:
            issues.append(CatalogIssue(source, lineno, "duplicate_section",
                          f"{draft.label} has a second {label} section (first at line "
                          f"{draft.header_lines[label]}); merge them into one"))
        else:
            draft.sections[label] = current = [rest]
            draft.header_lines[label] = lineno
    if preamble_line is not None:
        fix = "remove it or start a product with" if drafts else "no product found; each product must start with"
        issues.append(CatalogIssue(source, preamble_line, "preamble",
                      f'text before the first "Name:" line; {fix} a line "Name: <product name>" at column 0'))
    return drafts


def _check_drafts(drafts: list[_Draft], source: str, issues: list[CatalogIssue]) -> None:
    """Append the per-product issues: missing, empty and duplicate sections or products."""
    first_by_key: dict[str, _Draft] = {}
    for draft in drafts:
        if not draft.name:
            issues.append(CatalogIssue(source, draft.line, "empty_section",
                          'the "Name:" line has no product name; write it after the colon, e.g. "Name: Vortex Mixer"'))
        elif (first := first_by_key.get(_name_key(draft.name))) is not None:
            issues.append(CatalogIssue(source, draft.line, "duplicate_product",
                          f'{draft.label} duplicates product "{first.name}" at line {first.line} (names must be '
                          "unique ignoring case and spacing); rename or remove one"))
        else:
            first_by_key[_name_key(draft.name)] = draft
        for header in SECTIONS:
            if header not in draft.sections:
                issues.append(CatalogIssue(source, draft.line, "missing_section",
                              f"{draft.label} has no {header} section ({_NEEDS})"))
            elif not draft.text(header):
                issues.append(CatalogIssue(source, draft.header_lines[header], "empty_section",
                              f'{draft.label} has an empty {header} section; write its text after "{header}:"'))


def parse_catalog(data: bytes, source: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Catalog:
    """Parse catalog ``data`` (named ``source`` in messages); raise CatalogValidationError listing every issue."""
    if len(data) > max_bytes:
        raise CatalogValidationError([_oversize_issue(source, len(data), max_bytes)])
    issues: list[CatalogIssue] = []
    drafts = _parse_lines(_decode(data, source).split("\n"), source, issues)
    _check_drafts(drafts, source, issues)
    if issues:
        issues.sort(key=lambda issue: issue.line or 0)
        if len(issues) > MAX_ISSUES:
            more = len(issues) - MAX_ISSUES
            issues = [*issues[:MAX_ISSUES], CatalogIssue(source, None, "too_many_issues", f"... and {more} more")]
        raise CatalogValidationError(issues)
    products = tuple(
        Product(draft.name, *(draft.text(header) for header in SECTIONS), line=draft.line) for draft in drafts
    )
    return Catalog(source, products, hashlib.sha256(data).hexdigest(), len(data))


def validate_file(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Catalog:
    """Read and parse the catalog at ``path``; an oversize file is rejected before it is read."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise CatalogValidationError([_oversize_issue(str(path), size, max_bytes)])
    return parse_catalog(path.read_bytes(), str(path), max_bytes=max_bytes)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``validate PATH [--max-bytes N]``; exit 0 when valid, 2 when invalid or unreadable."""
    parser = argparse.ArgumentParser(prog="python -m tailor.catalog", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a catalog file and print a summary")
    validate.add_argument("path", type=Path, help="the catalog .txt file")
    validate.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                          help=f"reject files larger than this (default {DEFAULT_MAX_BYTES})")
    args = parser.parse_args(argv)
    try:
        catalog = validate_file(args.path, max_bytes=args.max_bytes)
    except FileNotFoundError:
        print(f"{args.path}: no such file", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{args.path}: cannot read the file ({error.strerror or error})", file=sys.stderr)
        return 2
    except CatalogValidationError as error:
        for issue in error.issues:
            print(issue, file=sys.stderr)
        return 2
    count = len(catalog.products)
    print(f"{args.path}: valid, {count} product{'s' if count != 1 else ''}, version {catalog.version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
