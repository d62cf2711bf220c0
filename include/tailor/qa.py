"""QA datasets: JSON lists of ``{"product_name", "question", "answer"}`` (extra fields allowed), validated."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from tailor.catalog import name_key
from tailor.exceptions import QADatasetError
from tailor.objects import INCLUDE_DIR as INCLUDE_DIR  # re-exported: callers locate packaged QA sets by it
from tailor.objects import MAX_READ_BYTES, confined_path, read_confined

REQUIRED = ("product_name", "question", "answer")
#: The warehouse column ``eval_score.sample_id VARCHAR(128)``; Redshift counts its length in bytes.
MAX_SAMPLE_ID_BYTES = 128
#: A QA set larger than this is refused before it is read (10,000 items are about 2 MB).
MAX_QA_BYTES = MAX_READ_BYTES
#: Problems listed in one error at most (a broken 10,000-item file must not make a 10,000-line message).
MAX_PROBLEMS = 50
# Hiragana, Katakana and Han have no spaces between words: each character is a token of its own.
_NO_SPACE_SCRIPTS = ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),
                     (0x20000, 0x3FFFF))
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads pairs valid escapes, so any left is alone
_INVISIBLE_IN_ID = ("Cc", "Cf", "Zl", "Zp")


@dataclass(frozen=True)
class QAItem:
    """One question; ``sample_id`` is the item's ``id`` as text, or a hash of its normalised question."""

    sample_id: str
    product_name: str
    question: str
    answer: str
    category: str = ""


@dataclass(frozen=True)
class QADataset:
    source: str
    items: tuple[QAItem, ...]
    sha256: str

    @property
    def version(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True)
class Batch:
    """Items ``[start, stop)`` of a QA set answered by ``approach``: one mapped ``generate_answers`` task."""

    approach: str
    index: int
    start: int
    stop: int


class _TokenChars(dict):
    """``str.translate`` table filled on first sight of a character: letters, digits and marks of any script
    kept, a no-space-script character padded into a token of its own, anything else a space."""

    def __missing__(self, code: int) -> int | str:
        char = chr(code)
        if unicodedata.category(char)[0] not in "LNM":
            value: int | str = " "
        elif any(low <= code <= high for low, high in _NO_SPACE_SCRIPTS):
            value = f" {char} "
        else:
            value = code
        self[code] = value
        return value


_TOKEN_CHARS = _TokenChars()


def normalise(text: str) -> str:
    """Case- and punctuation-insensitive form used to detect duplicates and train/test leaks, in any script.

    NFKC (full-width and compatibility forms fold), case folded; tokens are runs of letters, digits and
    combining marks, so "Какова мощность VM-200?" keeps its words; Japanese and Chinese, written without
    spaces, become one token per character ("VM-200の重量" -> "vm 200 の 重 量").
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().translate(_TOKEN_CHARS).split())


class _Object(dict):
    """A JSON object that remembers the keys it had more than once (JSON keeps the last silently)."""

    duplicate_keys: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    result = _Object(pairs)
    if len(result) != len(pairs):
        counts: dict[str, int] = {}
        for key, _ in pairs:
            counts[key] = counts.get(key, 0) + 1
        result.duplicate_keys = tuple(key for key, count in counts.items() if count > 1)
    return result


class _NonFinite:
    """A bare ``NaN``, ``Infinity`` or ``-Infinity``: not JSON, but Python's json reads it as a float."""

    def __init__(self, token: str) -> None:
        self.token = token


def _shown(text: str, limit: int = 80) -> str:
    """``text`` safe to print: controls, invisible characters and lone surrogates as escapes, cut at ``limit``."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    return "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in cut)


def _text_problem(text: str) -> str | None:
    surrogate = _LONE_SURROGATE.search(text)
    if surrogate:
        return (f"contains a lone surrogate ({ascii(surrogate.group())[1:-1]}), half of a UTF-16 pair and no "
                "character; fix the text or the tool that wrote it")
    if "\0" in text:
        return "contains a NUL character (\\u0000); remove it"
    return None


def _value_problems(entry: Any) -> list[str]:
    """Bare NaN/Infinity, duplicate keys, lone surrogates and NUL characters anywhere in one item, each named
    by its field path (``answer``, ``meta.tags[2]``). Iterative: nesting is bounded by the JSON parser only."""
    problems: list[str] = []
    stack: list[tuple[str, Any]] = [("", entry)]
    while stack:
        path, value = stack.pop()
        field = f'field "{_shown(path)}"' if path else "the item"
        if isinstance(value, _NonFinite):
            problems.append(f"{field} is {value.token}: NaN, Infinity and -Infinity are not JSON numbers; write a "
                            "number, or the text as a string")
        elif isinstance(value, str):
            if problem := _text_problem(value):
                problems.append(f"{field} {problem}")
        elif isinstance(value, dict):
            for key in getattr(value, "duplicate_keys", ()):
                name = f"{path}.{key}" if path else key
                problems.append(f'field "{_shown(name)}" appears twice in one object (duplicate key; JSON readers '
                                "keep only the last); keep one")
            children = []
            for key, child in value.items():
                name = f"{path}.{key}" if path else key
                if problem := _text_problem(key):
                    problems.append(f'the name of field "{_shown(name)}" {problem}')
                children.append((name, child))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{path}[{i}]", child) for i, child in enumerate(value)]))
    return problems


def _id_text(value: Any) -> tuple[str, None] | tuple[None, str]:
    """The id as text (``17`` and ``"17"`` are the same id), or the rule it breaks."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        kinds = {bool: "true/false", float: "a number with a fraction or exponent", dict: "an object",
                 list: "a list", type(None): "null"}
        kind = next((k for t, k in kinds.items() if isinstance(value, t)), type(value).__name__)
        return None, f'id must be a string or an integer, got {kind}; write e.g. "q-001" or 17, or leave it out'
    text = str(value)
    if not text.strip():
        return None, "id is empty; give the item an id or leave it out (it is then derived from the question)"
    invisible = next((c for c in text if unicodedata.category(c) in _INVISIBLE_IN_ID), None)
    if invisible is not None:
        return None, (f'id "{_shown(text)}" contains a control or invisible character (U+{ord(invisible):04X}); '
                      "ids name results in reports and warehouse keys: use visible characters only")
    size = len(text.encode("utf-8"))
    if size > MAX_SAMPLE_ID_BYTES:
        return None, (f"id is {len(text)} characters ({size} bytes in UTF-8), longer than the warehouse column "
                      f"eval_score.sample_id VARCHAR({MAX_SAMPLE_ID_BYTES}) holds ({MAX_SAMPLE_ID_BYTES} bytes); "
                      "shorten it")
    return text, None


def _raise(problems: list[str]) -> NoReturn:
    if len(problems) > MAX_PROBLEMS:
        problems = [*problems[:MAX_PROBLEMS], f"... and {len(problems) - MAX_PROBLEMS} more"]
    raise QADatasetError("\n".join(problems))


def parse_qa(data: bytes, source: str) -> QADataset:
    """Validate a QA file; raise :class:`QADatasetError` naming the file, item and rule."""
    skip = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # a UTF-8 byte-order mark is accepted and dropped
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = skip + error.start
        line = data.count(b"\n", 0, offset) + 1
        raise QADatasetError(f"{source}: not UTF-8 (byte {offset}) at line {line}; re-save the file as UTF-8") from None
    try:
        raw = json.loads(text, parse_constant=_NonFinite, object_pairs_hook=_object)
    except json.JSONDecodeError as error:
        raise QADatasetError(f"{source} line {error.lineno}: invalid JSON ({error.msg})") from None
    except RecursionError:
        raise QADatasetError(f"{source}: invalid JSON (nested too deeply; expected a flat list of objects)") from None
    except ValueError:  # json reads integers with int(), which refuses more than 4300 digits
        raise QADatasetError(f"{source}: invalid JSON (a number has too many digits)") from None
    if not isinstance(raw, list) or not raw:
        raise QADatasetError(f"{source}: expected a non-empty JSON list of {{{', '.join(REQUIRED)}}} objects")
    items: list[QAItem] = []
    seen: dict[str, int] = {}  # normalised question -> first item
    seen_ids: dict[str, int] = {}  # NFC id -> first item
    problems: list[str] = []
    for index, entry in enumerate(raw):
        where = f"{source} item {index}"
        if value_problems := _value_problems(entry):
            problems.extend(f"{where}: {problem}" for problem in value_problems)
            continue
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected an object, got {type(entry).__name__}")
            continue
        missing = [f for f in REQUIRED if not isinstance(entry.get(f), str) or not entry[f].strip()]
        if missing:
            problems.append(f"{where}: missing or empty {', '.join(missing)} (each item needs {', '.join(REQUIRED)})")
            continue
        key = normalise(entry["question"])
        if key in seen:
            problems.append(f"{where}: duplicate of item {seen[key]} (question {entry['question']!r})")
            continue
        seen[key] = index
        if "id" in entry:
            sample_id, id_problem = _id_text(entry["id"])
            if sample_id is None:
                problems.append(f"{where}: {id_problem}")
                continue
        else:
            sample_id = hashlib.sha1(key.encode()).hexdigest()[:12]
        id_key = unicodedata.normalize("NFC", sample_id)  # "é" typed two ways is one id to a reader
        if id_key in seen_ids:
            problems.append(f'{where}: duplicate id "{_shown(sample_id)}": item {seen_ids[id_key]} has the same id '
                            '(ids compare as text: 1 and "1" are one id); give each item its own id')
            continue
        seen_ids[id_key] = index
        items.append(QAItem(sample_id, entry["product_name"].strip(), entry["question"].strip(),
                            entry["answer"].strip(), str(entry.get("category", ""))))
    if problems:
        _raise(problems)
    return QADataset(source, tuple(items), hashlib.sha256(data).hexdigest())


def check_products(dataset: QADataset, catalog_names: Iterable[str], catalog: str = "the catalog") -> None:
    """Refuse a QA set whose ``product_name`` s are not products of the catalog, compared as
    :func:`tailor.catalog.name_key` compares them (case, spacing, NFC, invisible characters ignored).

    Run before any model call: a question about a product the Knowledge Base lacks scores retrieval 0 and
    measures nothing. Every unknown name is listed with the closest catalog name as a suggestion.
    """
    by_key = {name_key(name): name for name in catalog_names}
    problems: list[str] = []
    hints: dict[str, str] = {}  # unknown name key -> "did you mean ...?"
    for index, item in enumerate(dataset.items):
        wanted = name_key(item.product_name)
        if wanted in by_key:
            continue
        if len(problems) < MAX_PROBLEMS and wanted not in hints:
            close = difflib.get_close_matches(wanted, list(by_key), n=1)
            hints[wanted] = f"did you mean {by_key[close[0]]!r}? " if close else ""
        problems.append(f"{dataset.source} item {index}: product_name {item.product_name!r} matches no "
                        f"product of {catalog} ({len(by_key)} products); {hints.get(wanted, '')}fix the name in the "
                        "QA set, or sync a catalog that has the product")
    if problems:
        _raise(problems)


def batch_plan(n_items: int, approaches: Sequence[str], batch_size: int, max_tasks: int) -> list[Batch]:
    """Batches of ``batch_size`` items for each approach, the size grown just enough that there are at most
    ``max_tasks`` of them (Airflow fails a mapped task that expands past ``[core] max_map_length``)."""
    if batch_size < 1 or max_tasks < 1:
        raise ValueError(f"batch_size={batch_size} and max_tasks={max_tasks} must both be at least 1")
    if n_items < 1 or not approaches:
        return []
    per_approach = max_tasks // len(approaches)
    if per_approach < 1:
        raise ValueError(f"{len(approaches)} approaches need at least {len(approaches)} mapped tasks, over the "
                         f"limit of {max_tasks} ([core] max_map_length); raise it or evaluate fewer approaches")
    size = max(batch_size, -(-n_items // per_approach))  # ceil: ceil(n / size) <= per_approach
    return [Batch(approach, start // size, start, min(start + size, n_items))
            for approach in approaches for start in range(0, n_items, size)]


def load_qa(reference: str, s3: Any = None, *, bucket: str | None = None, max_bytes: int = MAX_QA_BYTES) -> QADataset:
    """Load a QA set from ``s3://bucket/key`` (with a boto3 client; only in ``bucket`` when it is given) or a
    regular file under include/ (relative paths are read there), refused unread when over ``max_bytes``."""
    if reference.startswith("s3://") and s3 is None:
        raise QADatasetError(f"{reference}: an S3 client is needed to read it")
    try:
        data = read_confined(reference, s3, bucket=bucket, max_bytes=max_bytes)
        source = reference if reference.startswith("s3://") else str(confined_path(reference))
    except FileNotFoundError as error:
        raise QADatasetError(f"{error}: QA file not found (set qa.test_set / qa.train_set or the dataset Param "
                             "to a path under include/ or an s3:// URI)") from None
    except ValueError as error:
        raise QADatasetError(str(error)) from None
    return parse_qa(data, source)
