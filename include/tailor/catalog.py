"""Parse and validate a product catalog text file.

A catalog is a sequence of products. Each product starts with a ``Name: <name>`` line at column 0, followed by
the sections ``Description:``, ``Safety_instructions:``, ``Configuration:`` and ``Operation:`` in any order.
A section's text may start on its header line and continue until the next header.

Only those five headers, spelled exactly so at column 0, are structure. Every other ``Label:`` line -
``Table of Contents:``, ``Electrical Safety:``, ``Maintenance and Troubleshooting:``, ``Note:`` - is content
of the section it stands in and is kept verbatim (in the Knowledge Base document and in the training text),
the way customers write their manuals. A line that looks like a misspelt header (``Safety Instructions:``,
``  Operation:``) is reported only where it explains a missing section.

:func:`parse_catalog` reports every problem at once as a :class:`~tailor.exceptions.CatalogValidationError`
whose issues carry a stable ``rule`` string. Run ``python -m tailor.catalog validate PATH`` to check a file.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import hashlib
import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tailor.exceptions import CatalogValidationError

SECTIONS = ("Description", "Safety_instructions", "Configuration", "Operation")
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
#: A product name is metadata of its Knowledge Base document (``.metadata.json``, at most 10 KB per Bedrock's
#: data-source rules). 200 characters, JSON-escaped at up to 12 bytes each, stay under 2.5 KB.
DEFAULT_MAX_NAME_CHARS = 200
MAX_ISSUES = 50

_HEADERS = ("Name", *SECTIONS)
_HEADERS_BY_FOLDED = {header.casefold(): header for header in _HEADERS}
_STRUCTURE_RE = re.compile(r"(Name|Description|Safety_instructions|Configuration|Operation):(.*)", re.DOTALL)
_LOOKALIKE_SCAN = 2000
_LABEL_RE = re.compile(r"\s*([^\W\d][\w \t-]{0,40}?)\s*:")  # a line that starts like "Some label:"
_NEEDS = "each product needs " + ", ".join(_HEADERS)
_UTF8_BOM = b"\xef\xbb\xbf"
# UTF-32 first: its little-endian mark FF FE 00 00 starts with UTF-16's FF FE.
_WIDE_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
              b"\xfe\xff": "UTF-16"}
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")  # category Cc except \t \n \r \f
_MAX_CONTROL_RATIO = 0.01
_INVISIBLE_LEAD = "\ufeff\f"
_HEADER_STARTS = frozenset("NDSCO" + _INVISIBLE_LEAD)  # first characters a structural line can have


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
            if name_key(product.name) == name_key(name):
                return product
        known = ", ".join(repr(product.name) for product in self.products)
        raise KeyError(f"no product {name!r} in {self.source}; known products: {known}")


def _shown(name: str) -> str:
    """``name`` for a message: invisible and control characters spelled out (``\\u200b``), at most 80 characters."""
    shown = "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cf", "Cc") else c for c in name)
    return shown if len(shown) <= 80 else shown[:77] + "..."


@dataclass(slots=True)
class _Draft:
    """A product while it is being parsed: its name, line and the raw lines of each section seen."""

    name: str
    line: int
    sections: dict[str, list[str]] = field(default_factory=dict)
    header_lines: dict[str, int] = field(default_factory=dict)
    stray_reported: bool = False

    @property
    def label(self) -> str:
        return f'product "{_shown(self.name)}"' if self.name else f"the unnamed product at line {self.line}"

    def text(self, header: str) -> str:
        return "\n".join(line.rstrip() for line in self.sections[header]).strip()


def name_key(name: str) -> str:
    """The form under which two product names are the same product: Unicode NFC, format characters removed
    (zero-width and bidi controls, category Cf), case folded, runs of whitespace as one space.

    Used for duplicate products in a catalog, for QA ``product_name`` matching and for the retrieval-hit test,
    so "Vortex  mixer vm-200" and "Vortex Mixer VM\u200b-200" name the same product everywhere.
    """
    if not name.isascii():  # ASCII has no format characters and is NFC already
        name = "".join(c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c) != "Cf")
    return " ".join(name.split()).casefold()


def _clean_name(name: str) -> str:
    """The name as stored: NFC (one spelling per character) with surrounding whitespace removed."""
    return unicodedata.normalize("NFC", name).strip()


def _line_of(data: bytes, offset: int) -> int:
    """The 1-based line of byte ``offset`` counting LF, CRLF and lone CR line ends (old Mac files are CR-only)."""
    head = data[:offset]
    return head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n") + 1


def _oversize_issue(source: str, size: int, max_bytes: int) -> CatalogIssue:
    return CatalogIssue(
        source, None, "oversize",
        f"file is {size} bytes, over the limit of {max_bytes} bytes; split the catalog or raise the limit "
        "(it is configurable: max_bytes in code, --max-bytes on the command line)",
    )


def _wide_without_bom(head: bytes) -> str | None:
    """"UTF-16" / "UTF-32" if the NUL bytes of ``head`` fall where that encoding puts them for Latin text (the
    high bytes of every 2- or 4-byte character), else None: a stray NUL in a UTF-8 file is binary content."""
    for encoding, width in (("UTF-32", 4), ("UTF-16", 2)):
        usable = head[: len(head) - len(head) % width]
        units = len(usable) // width
        if units < 4:
            continue
        zero_at = [usable[offset::width].count(0) for offset in range(width)]
        if sum(count >= 0.9 * units for count in zero_at) == width - 1:
            return encoding
    return None


def _decode(data: bytes, source: str) -> str:
    """Check the raw bytes (rules oversize excluded) and return the text with line endings normalized."""

    def fail(line: int | None, rule: str, message: str) -> CatalogValidationError:
        return CatalogValidationError([CatalogIssue(source, line, rule, message)])

    for bom, encoding in _WIDE_BOMS.items():
        if data.startswith(bom):
            raise fail(None, "encoding", f"file is {encoding} encoded (byte-order mark {bom.hex(' ').upper()}); "
                                         "re-save it as UTF-8")
    nul = data.find(b"\0")
    if nul >= 0:
        wide = _wide_without_bom(data[:4096])
        if wide:
            raise fail(None, "encoding", f"file looks {wide} encoded without a byte-order mark (every character "
                                         "carries NUL bytes); re-save it as UTF-8")
        raise fail(_line_of(data, nul), "binary",
                   f"binary content, expected a UTF-8 text file (NUL byte at byte offset {nul})")
    skip = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = skip + error.start
        raise fail(_line_of(data, offset), "encoding",
                   f"not valid UTF-8 (byte 0x{data[offset]:02X} at byte offset {offset}); re-save the file as UTF-8"
                   ) from error
    if not text.strip():
        raise fail(None, "empty", 'file is empty or only whitespace; expected products starting with "Name: <name>"')
    controls = len(_CONTROL_RE.findall(text))
    if controls > _MAX_CONTROL_RATIO * len(text):
        raise fail(None, "binary", "binary content, expected a UTF-8 text file "
                                   f"({controls} of {len(text)} characters are control characters)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _structural(line: str) -> tuple[str, str] | None:
    """``(header, rest)`` if ``line`` is one of the five structural headers at column 0, else None (content).

    Invisible characters before a header are skipped: a U+FEFF left where UTF-8 files saved with a BOM were
    concatenated, or a form feed that PDF-to-text puts before the first line of a page.
    """
    match = _STRUCTURE_RE.match(line.lstrip(_INVISIBLE_LEAD))
    return (match.group(1), match.group(2)) if match else None


@functools.lru_cache(maxsize=4096)
def _misspelt_header(label: str) -> str | None:
    """The structural header a content label most likely misspells (``Safety Instructions``, ``safety_instruction``,
    ``  Description``, ``Name ``), or None. Only consulted to explain a missing section, never to reject a line."""
    folded = re.sub(r"[\s_-]+", "_", label.strip()).casefold()
    if folded in _HEADERS_BY_FOLDED:
        return _HEADERS_BY_FOLDED[folded]
    if len(folded) >= 4 and (prefixed := [h for f, h in _HEADERS_BY_FOLDED.items() if f.startswith(folded)]):
        return prefixed[0]  # "Config:", "Desc:"
    close = difflib.get_close_matches(folded, list(_HEADERS_BY_FOLDED), n=1, cutoff=0.8)
    return _HEADERS_BY_FOLDED[close[0]] if close else None


def _label_of(line: str) -> str | None:
    match = _LABEL_RE.match(line.lstrip(_INVISIBLE_LEAD))
    return match.group(1) if match else None


class _Issues:
    """Issues in the order found, kept up to a cap (a pathological 5 MB file can break a rule on every line, and
    the report shows :data:`MAX_ISSUES` of them anyway); the rest are only counted, their messages never built."""

    def __init__(self, source: str, cap: int = 4 * MAX_ISSUES) -> None:
        self.source, self.cap, self.dropped = source, cap, 0
        self.kept: list[CatalogIssue] = []

    def add(self, line: int | None, rule: str, message: Callable[..., str]) -> None:
        """``message`` is called without arguments; ``...`` lets lambdas bind loop values as defaults (mypy cannot
        infer a lambda with defaults against ``Callable[[], str]``)."""
        if len(self.kept) < self.cap:
            self.kept.append(CatalogIssue(self.source, line, rule, message()))
        else:
            self.dropped += 1

    def __bool__(self) -> bool:
        return bool(self.kept)

    def report(self) -> list[CatalogIssue]:
        issues = sorted(self.kept, key=lambda issue: issue.line or 0)
        more = len(issues) - MAX_ISSUES + self.dropped
        if more > 0:
            issues = [*issues[:MAX_ISSUES], CatalogIssue(self.source, None, "too_many_issues", f"... and {more} more")]
        return issues


def _hint(line: int, text: str, header: str) -> str:
    shown = text if len(text) <= 60 else text[:57] + "..."
    where = "; headers start at column 0" if text[:1].isspace() else ""
    return f'line {line} "{shown}" looks like a misspelt {header} header (it is spelled "{header}:"{where})'


def _lookalike(lines: list[str], start: int, end: int, header: str) -> str:
    """"; line N ... looks like a misspelt <header> header" for the first such line in ``lines[start:end]``
    (0-based), or "". Scans at most :data:`_LOOKALIKE_SCAN` lines, so a pathological file stays fast."""
    for index in range(start, min(end, start + _LOOKALIKE_SCAN)):
        label = _label_of(lines[index])
        if label is not None and _misspelt_header(label) == header:
            return "; " + _hint(index + 1, lines[index].strip(_INVISIBLE_LEAD), header)
    return ""


def _name_problem(name: str, key: str, max_chars: int) -> str | None:
    """Why ``name`` (whose :func:`name_key` is ``key``) cannot name a product and be a document's metadata."""
    if not key:
        return "is empty once invisible characters (zero-width, bidi controls) are removed"
    if _CONTROL_RE.search(name):
        return "contains control characters"
    if "\ufffd" in name:
        return "contains U+FFFD (a character lost in an earlier conversion); restore the original name"
    if len(name) > max_chars:
        return (f"is {len(name)} characters long, over the limit of {max_chars} (names become Knowledge Base "
                "metadata, which Bedrock limits to 10 KB per document; configurable: max_name_chars)")
    return None


class _Parser:
    """One pass over the lines. Each product is checked when the next one starts and then kept only as a
    :class:`Product` (or dropped once the catalog is known to be invalid), so memory follows the valid products,
    not the issues of a pathological file.

    Only the five headers at column 0 are structure; every other line, ``Electrical Safety:`` or ``Note:``
    included, is content of the section it stands in.
    """

    def __init__(self, lines: list[str], issues: _Issues, max_name_chars: int) -> None:
        self.lines, self.issues, self.max_name_chars = lines, issues, max_name_chars
        self.products: list[Product] = []
        self.first_by_key: dict[str, tuple[int, str]] = {}  # name key -> line and name of its first product

    def parse(self) -> list[Product]:
        lines, issues = self.lines, self.issues
        draft: _Draft | None = None
        current: list[str] | None = None  # where content lines go; None before a product's first section
        preamble_line: int | None = None
        for index, line in enumerate(lines):
            header = _structural(line) if line[:1] in _HEADER_STARTS else None
            if header is None:
                if current is not None:
                    current.append(line)
                elif not line.strip():
                    continue
                elif draft is None:
                    preamble_line = preamble_line or index + 1
                elif not draft.stray_reported:
                    draft.stray_reported = True
                    issues.add(index + 1, "stray_text",
                               lambda label=draft.label: f"text after the Name line of {label} belongs to no "
                               "section; put it under one of " + ", ".join(SECTIONS))
                continue
            label, rest = header
            if label == "Name":
                if draft is not None:
                    self._finish(draft, index)
                draft, current = _Draft(rest.strip(), index + 1), None
            elif draft is None:
                preamble_line = preamble_line or index + 1
                current = []  # text under a header before any product is part of the preamble, reported once
            elif label in draft.sections:
                self._duplicate_section(draft, label, index)
                current = []  # its text is dropped: the issue is reported already
            else:
                draft.sections[label] = current = [rest]
                draft.header_lines[label] = index + 1
        if draft is not None:
            self._finish(draft, len(lines))
        if preamble_line is not None:
            self._preamble(preamble_line)
        return self.products

    def _duplicate_section(self, draft: _Draft, header: str, index: int) -> None:
        def message() -> str:
            first = draft.header_lines[header]
            hint = _lookalike(self.lines, first, index, "Name")
            hint = hint and hint + " that would have started a new product"
            return f"{draft.label} has a second {header} section (first at line {first}); merge them into one{hint}"

        self.issues.add(index + 1, "duplicate_section", message)

    def _preamble(self, line: int) -> None:
        end = next((i for i, text in enumerate(self.lines) if (_structural(text) or ("",))[0] == "Name"),
                   len(self.lines))

        def message() -> str:
            fix = "remove it or start a product with" if end < len(self.lines) else \
                "no product found; each product must start with"
            return (f'text before the first "Name:" line; {fix} a line "Name: <product name>" at column 0'
                    f'{_lookalike(self.lines, line - 1, end, "Name")}')

        self.issues.add(line, "preamble", message)

    def _finish(self, draft: _Draft, end: int) -> None:
        """Check a product whose lines end before 0-based ``end``; keep it if the catalog is still valid."""
        issues, start = self.issues, draft.line - 1
        if not draft.name:
            issues.add(draft.line, "empty_section", lambda: 'the "Name:" line has no product name; write it after the '
                       'colon, e.g. "Name: Vortex Mixer"')
        elif problem := _name_problem(draft.name, key := name_key(draft.name), self.max_name_chars):
            issues.add(draft.line, "invalid_name", lambda: f'the product name "{_shown(draft.name)}" {problem}')
        elif (first := self.first_by_key.get(key)) is not None:
            first_line, first_name = first
            issues.add(draft.line, "duplicate_product", lambda: f'{draft.label} duplicates product '
                       f'"{_shown(first_name)}" at line {first_line} (names must be '
                       "unique ignoring case, spacing and invisible characters); rename or remove one")
        else:
            self.first_by_key[key] = (draft.line, draft.name)
        for header in SECTIONS:
            if header not in draft.sections:
                issues.add(draft.line, "missing_section", lambda h=header: f"{draft.label} has no {h} section "
                           f"({_NEEDS}){_lookalike(self.lines, start + 1, end, h)}")
            elif not draft.text(header):
                issues.add(draft.header_lines[header], "empty_section", lambda h=header: f"{draft.label} has an empty "
                           f'{h} section; write its text after "{h}:"')
        if not issues:
            description, safety_instructions, configuration, operation = (draft.text(h) for h in SECTIONS)
            self.products.append(Product(_clean_name(draft.name), description, safety_instructions, configuration,
                                         operation, line=draft.line))


def parse_catalog(data: bytes, source: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                  max_name_chars: int = DEFAULT_MAX_NAME_CHARS) -> Catalog:
    """Parse catalog ``data`` (named ``source`` in messages); raise CatalogValidationError listing every issue."""
    if len(data) > max_bytes:
        raise CatalogValidationError([_oversize_issue(source, len(data), max_bytes)])
    issues = _Issues(source)
    products = _Parser(_decode(data, source).split("\n"), issues, max_name_chars).parse()
    if issues:
        raise CatalogValidationError(issues.report())
    return Catalog(source, tuple(products), hashlib.sha256(data).hexdigest(), len(data))


def validate_file(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                  max_name_chars: int = DEFAULT_MAX_NAME_CHARS) -> Catalog:
    """Read and parse the catalog at ``path``; an oversize file is rejected before it is read."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise CatalogValidationError([_oversize_issue(str(path), size, max_bytes)])
    return parse_catalog(path.read_bytes(), str(path), max_bytes=max_bytes, max_name_chars=max_name_chars)


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
