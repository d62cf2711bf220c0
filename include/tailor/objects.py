"""Where the bake-off's inputs and outputs live: ``s3://bucket/key`` URIs or local paths, and JSON Lines bodies.

One reading of "an S3 URI or a path" for every task (QA sets, catalogs, the judge's answers) and one JSONL
format for every per-sample file, so a file written by one task always parses in the next.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

#: Relative local paths in settings and Params are read under include/ (where the packaged samples live).
INCLUDE_DIR = Path(__file__).resolve().parent.parent
#: Default read limit of :func:`read_confined`: far above any QA set (10,000 items are ~2 MB), far below memory.
MAX_READ_BYTES = 50 * 1024 * 1024
#: Line breaks ``json.dumps(ensure_ascii=False)`` writes raw and ``str.splitlines()`` splits on (it escapes the rest).
_LINE_BREAK_ESCAPES = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; anything else is a ``ValueError`` naming the value."""
    if not uri.startswith("s3://"):
        raise ValueError(f"expected an s3:// URI, got {uri!r}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ValueError(f"{uri!r}: an s3:// URI needs a bucket and a key (s3://bucket/key)")
    return bucket, key


def confined_path(reference: str, root: Path = INCLUDE_DIR) -> Path:
    """The regular file ``reference`` names inside ``root`` (a relative path is read under ``root``), symlinks
    resolved. ``ValueError`` naming the reference if it resolves outside ``root`` (``..``, an absolute path, a
    symlink leading out) or is not a regular file (a directory, a device, a FIFO); ``FileNotFoundError`` if missing.
    """
    base = root.resolve()
    try:
        resolved = (base / reference).resolve()  # an absolute reference replaces base; ".." and symlinks followed
    except (OSError, RuntimeError, ValueError) as error:  # a NUL byte, a symlink loop, a name too long
        raise ValueError(f"{reference!r}: not a usable path ({error}); give the path of a file under {base}") from None
    if not resolved.is_relative_to(base):
        raise ValueError(f"{reference}: resolves to {resolved}, outside {base}; local files are read under "
                         f"{base} only (give a path inside it, or an s3:// URI)")
    try:
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{reference}: no such file under {base}") from None
    except OSError as error:
        raise ValueError(f"{reference}: cannot be read ({error.strerror}); give the path of a readable file") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{reference}: {resolved} is not a regular file; give the path of a file")
    return resolved


def read_confined(reference: str, s3: Any, *, bucket: str | None = None, root: Path = INCLUDE_DIR,
                  max_bytes: int = MAX_READ_BYTES) -> bytes:
    """The bytes behind ``reference``, read only from where it may point and never more than ``max_bytes``.

    ``s3://bucket/key`` (through ``s3``, a boto3 client) must name ``bucket`` when one is given; a local path
    must be a regular file under ``root`` (see :func:`confined_path`). The size is checked before reading
    (``ContentLength``, ``fstat``) and at most ``max_bytes + 1`` bytes are read, so a file that grows in between
    is refused too. ``ValueError`` names the reference and the rule; a missing file or object is
    ``FileNotFoundError``.
    """
    if reference.startswith("s3://"):
        ref_bucket, key = split_s3_uri(reference)
        if bucket is not None and ref_bucket != bucket:
            raise ValueError(f"{reference}: not in the bake-off bucket {bucket}; upload the file to "
                             f"s3://{bucket}/ and give that URI")
        try:
            response = s3.get_object(Bucket=ref_bucket, Key=key)
        except Exception as error:  # botocore's NoSuchKey is a class of the client, not importable here
            if getattr(error, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"{reference}: no such object") from None
            raise
        body = response["Body"]
        try:
            _check_size(reference, response.get("ContentLength"), max_bytes)
            data = bytes(body.read(max_bytes + 1))
        finally:
            body.close()
    else:
        path = confined_path(reference, root)
        # O_NONBLOCK: a FIFO swapped in after the check must not hang the open; O_NOFOLLOW: nor a symlink
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as file:
            status = os.fstat(file.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise ValueError(f"{reference}: {path} is not a regular file; give the path of a file")
            _check_size(reference, status.st_size, max_bytes)
            data = file.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after the size check
        raise ValueError(f"{reference}: more than {max_bytes} bytes, over the read limit; split it into smaller files")
    return data


def _check_size(reference: str, size: int | None, max_bytes: int) -> None:
    if size is not None and size > max_bytes:
        raise ValueError(f"{reference}: {size} bytes, over the read limit of {max_bytes} bytes; split it into "
                         "smaller files")


def to_jsonl(records: list[dict[str, Any]]) -> bytes:
    """One JSON object per line, UTF-8, non-ASCII kept; values JSON lacks (datetimes) as their ``str``.

    Safe to split on ``\\n`` by any reader, ``str.splitlines()`` included: JSON escapes the C0 line breaks, and
    U+0085, U+2028 and U+2029 (which JSON leaves raw) are written as ``\\uXXXX`` escapes too. A lone surrogate
    (a model's answer can hold one; UTF-8 cannot) is written as its ``\\udXXX`` escape and reads back as itself;
    a high surrogate directly followed by a low one reads back as the one character the pair encodes.
    """
    lines = (json.dumps(r, ensure_ascii=False, default=str).translate(_LINE_BREAK_ESCAPES) + "\n" for r in records)
    return "".join(lines).encode("utf-8", "backslashreplace")


def from_jsonl(body: bytes | str) -> list[dict[str, Any]]:
    """The records of :func:`to_jsonl` output; lines split on ``\\n`` only, blank lines ignored."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def read_jsonl(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    return from_jsonl(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
