"""``tailor.objects``: one reading of "s3:// URI or path" and one JSONL format for every task."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tailor.objects import INCLUDE_DIR, from_jsonl, local_path, read_jsonl, read_reference, split_s3_uri, to_jsonl


@pytest.mark.parametrize("uri, expected", [("s3://b/k.txt", ("b", "k.txt")),
                                           ("s3://b/a/b/c.json", ("b", "a/b/c.json"))])
def test_split_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert split_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["/tmp/x.jsonl", "S3://b/k", "gs://b/k", "s3://bucket-only", "s3:///key", ""])
def test_split_s3_uri_names_the_bad_value(uri: str) -> None:
    with pytest.raises(ValueError) as err:
        split_s3_uri(uri)
    assert repr(uri) in str(err.value)


def test_relative_paths_are_read_under_include(tmp_path: Path) -> None:
    assert local_path("data/qa/test.json") == INCLUDE_DIR / "data" / "qa" / "test.json"
    assert local_path(str(tmp_path)) == tmp_path
    (tmp_path / "a.txt").write_bytes(b"abc")
    assert read_reference(str(tmp_path / "a.txt"), s3=None) == b"abc"
    with pytest.raises(FileNotFoundError):
        read_reference(str(tmp_path / "missing.txt"), s3=None)


def test_s3_references_and_jsonl_round_trip() -> None:
    records = [{"q": "Größe?", "n": 1, "at": datetime(2026, 11, 26, tzinfo=timezone.utc)}, {"q": "x\ny"}]
    body = to_jsonl(records)
    assert body.count(b"\n") == 2 and "Größe".encode() in body  # one line per record, non-ASCII kept
    assert from_jsonl(body) == [{"q": "Größe?", "n": 1, "at": "2026-11-26 00:00:00+00:00"}, {"q": "x\ny"}]
    assert from_jsonl(body.decode() + "\n\n") == from_jsonl(body)  # blank lines ignored
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="tailor-objects")
        s3.put_object(Bucket="tailor-objects", Key="run/scored.jsonl", Body=body)
        assert read_reference("s3://tailor-objects/run/scored.jsonl", s3) == body
        assert read_jsonl(s3, "tailor-objects", "run/scored.jsonl") == from_jsonl(body)
        with pytest.raises(s3.exceptions.NoSuchKey):
            read_reference("s3://tailor-objects/missing.json", s3)
