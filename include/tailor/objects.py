"""Where the bake-off's inputs and outputs live: ``s3://bucket/key`` URIs or local paths, and JSON Lines bodies.

One reading of "an S3 URI or a path" for every task (QA sets, catalogs, the judge's answers) and one JSONL
format for every per-sample file, so a file written by one task always parses in the next.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Relative local paths in settings and Params are read under include/ (where the packaged samples live).
INCLUDE_DIR = Path(__file__).resolve().parent.parent


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; anything else is a ``ValueError`` naming the value."""
    if not uri.startswith("s3://"):
        raise ValueError(f"expected an s3:// URI, got {uri!r}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ValueError(f"{uri!r}: an s3:// URI needs a bucket and a key (s3://bucket/key)")
    return bucket, key


def local_path(reference: str) -> Path:
    """A path as given when absolute, else under include/."""
    path = Path(reference)
    return path if path.is_absolute() else INCLUDE_DIR / path


def read_reference(reference: str, s3: Any) -> bytes:
    """The bytes behind ``s3://bucket/key`` (through ``s3``, a boto3 client) or a local path (see
    :func:`local_path`). A missing object raises the client's ``NoSuchKey``; a missing file ``FileNotFoundError``."""
    if reference.startswith("s3://"):
        bucket, key = split_s3_uri(reference)
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return local_path(reference).read_bytes()


def to_jsonl(records: list[dict[str, Any]]) -> bytes:
    """One JSON object per line, UTF-8, non-ASCII kept; values JSON lacks (datetimes) as their ``str``."""
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records).encode("utf-8")


def from_jsonl(body: bytes | str) -> list[dict[str, Any]]:
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_jsonl(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    return from_jsonl(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
