"""``tailor.objects``: one reading of "s3:// URI or path" and one JSONL format for every task."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from tailor.objects import (
    INCLUDE_DIR,
    confined_path,
    from_jsonl,
    read_confined,
    read_jsonl,
    split_s3_uri,
    to_jsonl,
)


@pytest.mark.parametrize("uri, expected", [("s3://b/k.txt", ("b", "k.txt")),
                                           ("s3://b/a/b/c.json", ("b", "a/b/c.json"))])
def test_split_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert split_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["/tmp/x.jsonl", "S3://b/k", "gs://b/k", "s3://bucket-only", "s3:///key", ""])
def test_split_s3_uri_names_the_bad_value(uri: str) -> None:
    with pytest.raises(ValueError) as err:
        split_s3_uri(uri)
    assert repr(uri) in str(err.value)


def test_s3_references_and_jsonl_round_trip() -> None:
    records: list[dict[str, Any]] = [{"q": "Größe?", "n": 1, "at": datetime(2026, 11, 26, tzinfo=UTC)}, {"q": "x\ny"}]
    body = to_jsonl(records)
    assert body.count(b"\n") == 2 and "Größe".encode() in body  # one line per record, non-ASCII kept
    assert from_jsonl(body) == [{"q": "Größe?", "n": 1, "at": "2026-11-26 00:00:00+00:00"}, {"q": "x\ny"}]
    assert from_jsonl(body.decode() + "\n\n") == from_jsonl(body)  # blank lines ignored
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="tailor-objects")
        s3.put_object(Bucket="tailor-objects", Key="run/scored.jsonl", Body=body)
        assert read_confined("s3://tailor-objects/run/scored.jsonl", s3) == body
        assert read_jsonl(s3, "tailor-objects", "run/scored.jsonl") == from_jsonl(body)
        with pytest.raises(FileNotFoundError):
            read_confined("s3://tailor-objects/missing.json", s3)


# --- JSONL: every Unicode line break, lone surrogates ---------------------------------------------------------------

#: Every character ``str.splitlines()`` splits on (\r\n as a pair too).
LINE_BREAKS = ["\n", "\r", "\r\n", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def _hostile(text: str) -> dict:
    """``text`` in a key and a value at every level: top, nested object, list."""
    return {f"k{text}": f"v{text}", "nested": {f"n{text}": [f"a{text}b", {f"deep{text}": text}]}, text: text * 2}


def test_jsonl_round_trips_every_line_break_in_keys_and_values() -> None:
    records = [_hostile(br) for br in LINE_BREAKS] + [_hostile("".join(LINE_BREAKS))]
    body = to_jsonl(records)
    assert body.count(b"\n") == len(records)
    for raw in ("\x85", "\u2028", "\u2029"):  # JSON leaves these raw: the writer escapes them
        assert raw.encode() not in body
    assert len(body.decode().splitlines()) == len(records)  # even a naive line reader sees one line per record
    assert from_jsonl(body) == records
    assert from_jsonl(body.decode()) == records


def test_jsonl_reader_splits_on_newline_only() -> None:
    """A line written by another JSON writer with the separators raw still parses as one record."""
    body = '{"a": "x\u2028y\x85z\u2029"}\n{"b": 1}\r\n'.encode()
    assert from_jsonl(body) == [{"a": "x\u2028y\x85z\u2029"}, {"b": 1}]


@pytest.mark.parametrize("text", ["\ud800", "\udfff", "a\udc80b", "\ud83d x", "x \ude00", "\ud800\u2028\udbff"],
                         ids=["high", "low", "inside", "high-then-space", "low-alone", "with-separator"])
def test_jsonl_writes_a_lone_surrogate_as_its_escape_and_reads_it_back(text: str) -> None:
    records: list[dict[str, Any]] = [{"answer": text, text: {"nested": [text]}}, {"after": "the batch goes on"}]
    body = to_jsonl(records)  # used to raise UnicodeEncodeError and lose the whole batch
    body.decode("utf-8")  # valid UTF-8
    assert b"\\ud" in body
    assert from_jsonl(body) == records


# --- confined, bounded reads ----------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "data").mkdir(parents=True)
    (tmp_path / "root" / "data" / "qa.json").write_bytes(b"[1]")
    (tmp_path / "outside.json").write_bytes(b"secret")
    return tmp_path / "root"


def test_confined_path_reads_under_root(root: Path) -> None:
    expected = (root / "data" / "qa.json").resolve()
    assert confined_path("data/qa.json", root) == expected
    assert confined_path(str(root / "data" / "qa.json"), root) == expected  # absolute, inside
    assert confined_path("data/../data/./qa.json", root) == expected
    (root / "inside-link.json").symlink_to(root / "data" / "qa.json")
    assert confined_path("inside-link.json", root) == expected
    assert read_confined("data/qa.json", None, root=root) == b"[1]"


def test_packaged_qa_set_is_readable_by_default() -> None:
    assert confined_path("data/qa/test.json") == (INCLUDE_DIR / "data" / "qa" / "test.json").resolve()
    assert read_confined("data/qa/test.json", None) == (INCLUDE_DIR / "data" / "qa" / "test.json").read_bytes()


@pytest.mark.parametrize("reference", ["../outside.json", "data/../../outside.json", "/etc/passwd", "/dev/zero",
                                       "escape-link.json", "dir-link/outside.json"])
def test_confined_path_refuses_everything_outside_root(root: Path, reference: str) -> None:
    (root / "escape-link.json").symlink_to(root.parent / "outside.json")
    (root / "dir-link").symlink_to(root.parent)
    with pytest.raises(ValueError) as err:
        read_confined(reference, None, root=root)
    assert str(err.value).startswith(f"{reference}: resolves to ")
    assert f"outside {root.resolve()}; local files are read under" in str(err.value)


def test_confined_path_refuses_what_is_not_a_regular_file(root: Path) -> None:
    os.mkfifo(root / "fifo.json")  # opening a FIFO for reading would block forever
    (root / "dev-link").symlink_to("/dev/zero")
    for reference in ("data", "fifo.json", ".", ""):
        with pytest.raises(ValueError, match="is not a regular file; give the path of a file"):
            read_confined(reference, None, root=root)
    with pytest.raises(ValueError, match="outside"):  # a device is never under root, even through a link
        read_confined("dev-link", None, root=root)
    with pytest.raises(ValueError, match="not a usable path"):
        read_confined("data/qa\0.json", None, root=root)
    with pytest.raises(FileNotFoundError, match=r"^data/missing\.json: no such file under "):
        read_confined("data/missing.json", None, root=root)


def test_local_read_is_bounded_before_reading(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (root / "big.json").write_bytes(b"x" * 101)
    assert read_confined("big.json", None, root=root, max_bytes=101) == b"x" * 101  # the limit is inclusive
    with pytest.raises(ValueError, match=r"^big\.json: 101 bytes, over the read limit of 100 bytes; split it"):
        read_confined("big.json", None, root=root, max_bytes=100)
    # a file that grows between the size check and the read: at most limit + 1 bytes are read, then refused
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result((*real_fstat(fd)[:6], 10, *real_fstat(fd)[7:])))
    with pytest.raises(ValueError, match=r"^big\.json: more than 100 bytes, over the read limit"):
        read_confined("big.json", None, root=root, max_bytes=100)


class _Body(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.requested: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.requested.append(size if size is not None else -1)
        return super().read(size)


def test_s3_reads_stay_in_the_bucket_and_are_bounded() -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("tailor-bakeoff", "someone-else"):
            s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key="qa/test.json", Body=b"[1]")
        s3.put_object(Bucket="tailor-bakeoff", Key="qa/big.json", Body=b"x" * 101)
        assert read_confined("s3://tailor-bakeoff/qa/test.json", s3, bucket="tailor-bakeoff") == b"[1]"
        with pytest.raises(ValueError) as err:
            read_confined("s3://someone-else/qa/test.json", s3, bucket="tailor-bakeoff")
        assert str(err.value) == ("s3://someone-else/qa/test.json: not in the bake-off bucket tailor-bakeoff; "
                                  "upload the file to s3://tailor-bakeoff/ and give that URI")
        with pytest.raises(ValueError, match=r"^s3://tailor-bakeoff/qa/big\.json: 101 bytes, over the read limit"):
            read_confined("s3://tailor-bakeoff/qa/big.json", s3, bucket="tailor-bakeoff", max_bytes=100)
        with pytest.raises(FileNotFoundError, match=r"^s3://tailor-bakeoff/qa/missing\.json: no such object$"):
            read_confined("s3://tailor-bakeoff/qa/missing.json", s3, bucket="tailor-bakeoff")
    # no ContentLength (or a wrong one): the body is read up to limit + 1 bytes only, then refused
    body = _Body(b"x" * 10_000)
    client = mock.MagicMock()
    client.get_object.return_value = {"Body": body}
    with pytest.raises(ValueError, match="more than 100 bytes"):
        read_confined("s3://b/k.json", client, max_bytes=100)
    assert body.requested == [101] and body.closed
