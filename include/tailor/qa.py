"""QA datasets: JSON lists of ``{"product_name", "question", "answer"}`` (extra fields allowed), validated."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from tailor.exceptions import QADatasetError
from tailor.objects import INCLUDE_DIR as INCLUDE_DIR  # re-exported: callers locate packaged QA sets by it
from tailor.objects import local_path, read_reference

REQUIRED = ("product_name", "question", "answer")


@dataclass(frozen=True)
class QAItem:
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


def normalise(text: str) -> str:
    """Case- and punctuation-insensitive form used to detect duplicates and train/test leaks."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


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
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise QADatasetError(f"{source} line {error.lineno}: invalid JSON ({error.msg})") from None
    except RecursionError:
        raise QADatasetError(f"{source}: invalid JSON (nested too deeply; expected a flat list of objects)") from None
    except ValueError:  # json reads integers with int(), which refuses more than 4300 digits
        raise QADatasetError(f"{source}: invalid JSON (a number has too many digits)") from None
    if not isinstance(raw, list) or not raw:
        raise QADatasetError(f"{source}: expected a non-empty JSON list of {{{', '.join(REQUIRED)}}} objects")
    items, seen, problems = [], {}, []
    for index, entry in enumerate(raw):
        where = f"{source} item {index}"
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
        sample_id = str(entry.get("id") or hashlib.sha1(key.encode()).hexdigest()[:12])
        items.append(QAItem(sample_id, entry["product_name"].strip(), entry["question"].strip(),
                            entry["answer"].strip(), str(entry.get("category", ""))))
    if problems:
        raise QADatasetError("\n".join(problems))
    return QADataset(source, tuple(items), hashlib.sha256(data).hexdigest())


def load_qa(reference: str, s3: Any = None) -> QADataset:
    """Load a QA set from ``s3://bucket/key`` (with a boto3 client) or a path (relative paths: under include/)."""
    if reference.startswith("s3://"):
        if s3 is None:
            raise QADatasetError(f"{reference}: an S3 client is needed to read it")
        return parse_qa(read_reference(reference, s3), reference)
    path = local_path(reference)
    if not path.exists():
        raise QADatasetError(f"{path}: QA file not found (set qa.test_set / qa.train_set to a path or s3:// URI)")
    return parse_qa(path.read_bytes(), str(path))
