"""Unit tests of tailor.kb_sync: SQS/S3 event parsing, quarantine, versioned staging and the current marker.

S3 is moto in-process (no server); the catalog layout comes from the packaged defaults via load_settings().
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from tailor.catalog import SECTIONS, parse_catalog
from tailor.config import CatalogSettings, load_settings
from tailor.exceptions import CatalogKeyError, CatalogValidationError
from tailor.kb_sync import (
    CatalogStore,
    Checked,
    _slug,
    catalog_key_of,
    catalog_keys_from_messages,
    document_keys,
    messages_from_asset_event_extras,
)
from tests.conftest import SAMPLE_CATALOG

BUCKET = "tailor-test-bucket"
INCOMING = "catalog/incoming/"
DATA_PREFIX = "kb-data/"


# --- helpers -------------------------------------------------------------------------------------------------


def product_text(name: str) -> str:
    lines = [f"Name: {name}"] + [f"{header}: {name} {header.lower()} text." for header in SECTIONS]
    return "\n".join(lines) + "\n"


def catalog_bytes(*names: str) -> bytes:
    return "\n".join(product_text(name) for name in names).encode("utf-8")


def s3_event(key: str, event_time: str, event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": event_time,
        "eventName": event_name,
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": 10}},
    }


def sqs_message(*records: dict[str, Any], as_string: bool = True) -> dict[str, Any]:
    body: Any = {"Records": list(records)}
    return {"MessageId": "m", "ReceiptHandle": "r", "Body": json.dumps(body) if as_string else body}


def body(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def keys_under(s3: Any, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def snapshot(s3: Any, prefix: str) -> dict[str, tuple[str, Any, bytes]]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {
        o["Key"]: (o["ETag"], o["LastModified"], body(s3, o["Key"]))
        for page in pages
        for o in page.get("Contents", [])
    }


# --- fixtures ------------------------------------------------------------------------------------------------


class Clock:
    """A controllable clock for moto's object LastModified (which has a resolution of one second)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 12, 0, 0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 10) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    import moto.s3.models

    fake = Clock()
    monkeypatch.setattr(moto.s3.models, "utcnow", fake)
    return fake


@pytest.fixture
def s3() -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client(
            "s3", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def settings() -> CatalogSettings:
    return load_settings(env={}).catalog


@pytest.fixture
def store(s3: Any, settings: CatalogSettings) -> CatalogStore:
    return CatalogStore(s3, BUCKET, settings, DATA_PREFIX)


def test_default_catalog_layout(settings: CatalogSettings) -> None:
    # The tests below rely on these prefixes; fail loudly if the defaults move.
    assert settings.incoming_prefix == INCOMING
    assert settings.quarantine_prefix == "catalog/quarantine/"
    assert settings.versions_prefix == "catalog/versions/"
    assert settings.current_marker_key == "catalog/current.json"
    assert settings.suffix == ".txt"


# --- catalog_keys_from_messages ------------------------------------------------------------------------------


def test_keys_from_messages_ignores_test_event() -> None:
    test_event = {
        "Body": json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET,
                            "Time": "2026-01-05T12:00:00.000Z", "RequestId": "x"})
    }
    real = sqs_message(s3_event(f"{INCOMING}a.txt", "2026-01-05T12:00:01.000Z"))
    assert catalog_keys_from_messages([test_event], INCOMING, ".txt") == []
    assert catalog_keys_from_messages([test_event, real], INCOMING, ".txt") == [f"{INCOMING}a.txt"]


def test_keys_from_messages_ignores_keys_outside_prefix_or_suffix() -> None:
    message = sqs_message(
        s3_event("catalog/quarantine/bad.txt", "2026-01-05T12:00:01.000Z"),
        s3_event("kb-data/product.txt", "2026-01-05T12:00:02.000Z"),
        s3_event(f"{INCOMING}notes.md", "2026-01-05T12:00:03.000Z"),
        s3_event(f"{INCOMING}catalog.txt.reason.json", "2026-01-05T12:00:04.000Z"),
        s3_event(INCOMING, "2026-01-05T12:00:05.000Z"),  # the "folder" object itself
        s3_event(f"{INCOMING}good.txt", "2026-01-05T12:00:06.000Z"),
    )
    assert catalog_keys_from_messages([message], INCOMING, ".txt") == [f"{INCOMING}good.txt"]


def test_keys_from_messages_without_suffix_accepts_any_key_under_prefix() -> None:
    message = sqs_message(
        s3_event(f"{INCOMING}notes.md", "2026-01-05T12:00:01.000Z"),
        s3_event(INCOMING, "2026-01-05T12:00:02.000Z"),
    )
    assert catalog_keys_from_messages([message], INCOMING) == [f"{INCOMING}notes.md"]


@pytest.mark.parametrize(
    "event_name", ["ObjectRemoved:Delete", "ObjectRemoved:DeleteMarkerCreated", "ObjectRestore:Completed"]
)
def test_keys_from_messages_ignores_non_created_events(event_name: str) -> None:
    message = sqs_message(s3_event(f"{INCOMING}a.txt", "2026-01-05T12:00:01.000Z", event_name))
    assert catalog_keys_from_messages([message], INCOMING, ".txt") == []


@pytest.mark.parametrize(
    "event_name", ["ObjectCreated:Put", "ObjectCreated:Copy", "ObjectCreated:CompleteMultipartUpload"]
)
def test_keys_from_messages_accepts_every_created_event(event_name: str) -> None:
    message = sqs_message(s3_event(f"{INCOMING}a.txt", "2026-01-05T12:00:01.000Z", event_name))
    assert catalog_keys_from_messages([message], INCOMING, ".txt") == [f"{INCOMING}a.txt"]


def test_keys_from_messages_decodes_url_encoded_keys() -> None:
    message = sqs_message(
        s3_event("catalog/incoming/spring+catalog+%282026%29.txt", "2026-01-05T12:00:01.000Z"),
        s3_event("catalog%2Fincoming%2Fweek%2B2.txt", "2026-01-05T12:00:02.000Z"),
        s3_event("catalog/incoming/caf%C3%A9.txt", "2026-01-05T12:00:03.000Z"),
    )
    assert catalog_keys_from_messages([message], INCOMING, ".txt") == [
        f"{INCOMING}spring catalog (2026).txt",
        f"{INCOMING}week+2.txt",
        f"{INCOMING}café.txt",
    ]


def test_keys_from_messages_orders_by_event_time_across_messages() -> None:
    messages = [
        sqs_message(s3_event(f"{INCOMING}c.txt", "2026-01-05T12:00:03.000Z")),
        sqs_message(
            s3_event(f"{INCOMING}a.txt", "2026-01-05T12:00:02.000Z"),
            s3_event(f"{INCOMING}b.txt", "2026-01-05T12:00:01.000Z"),
        ),
    ]
    assert catalog_keys_from_messages(messages, INCOMING, ".txt") == [
        f"{INCOMING}b.txt", f"{INCOMING}a.txt", f"{INCOMING}c.txt",
    ]


def test_keys_from_messages_drops_duplicates_keeping_first_position() -> None:
    messages = [
        sqs_message(s3_event(f"{INCOMING}a.txt", "2026-01-05T12:00:01.000Z")),
        sqs_message(s3_event(f"{INCOMING}b.txt", "2026-01-05T12:00:02.000Z")),
        sqs_message(s3_event(f"{INCOMING}a.txt", "2026-01-05T12:00:03.000Z")),  # re-uploaded
        sqs_message(s3_event(f"{INCOMING}a.txt", "2026-01-05T12:00:01.000Z")),  # redelivered
    ]
    keys = catalog_keys_from_messages(messages, INCOMING, ".txt")
    assert keys == [f"{INCOMING}a.txt", f"{INCOMING}b.txt"]


@pytest.mark.parametrize("as_string", [True, False], ids=["body-json-string", "body-dict"])
def test_keys_from_messages_accepts_body_as_string_or_dict(as_string: bool) -> None:
    message = sqs_message(s3_event(f"{INCOMING}a.txt", "2026-01-05T12:00:01.000Z"), as_string=as_string)
    if as_string:
        assert isinstance(message["Body"], str)
    assert catalog_keys_from_messages([message], INCOMING, ".txt") == [f"{INCOMING}a.txt"]


def test_keys_from_messages_accepts_bare_event_without_body() -> None:
    event = {"Records": [s3_event(f"{INCOMING}a.txt", "2026-01-05T12:00:01.000Z")]}
    assert catalog_keys_from_messages([event], INCOMING, ".txt") == [f"{INCOMING}a.txt"]


def test_keys_from_messages_empty() -> None:
    assert catalog_keys_from_messages([], INCOMING, ".txt") == []


# --- messages_from_asset_event_extras ------------------------------------------------------------------------


def test_messages_from_asset_watcher_extras() -> None:
    first = sqs_message(s3_event(f"{INCOMING}a.txt", "2026-01-05T12:00:02.000Z"))
    second = sqs_message(s3_event(f"{INCOMING}b.txt", "2026-01-05T12:00:01.000Z"))
    third = sqs_message(s3_event(f"{INCOMING}c.txt", "2026-01-05T12:00:03.000Z"))
    extras = [
        {"from_trigger": True, "payload": {"status": "success", "message_batch": [first, second]}},
        {"from_trigger": True, "payload": {"status": "success", "message_batch": [third]}},
    ]
    messages = messages_from_asset_event_extras(extras)
    assert messages == [first, second, third]
    # And the two functions compose as the sync DAG uses them.
    assert catalog_keys_from_messages(messages, INCOMING, ".txt") == [
        f"{INCOMING}b.txt", f"{INCOMING}a.txt", f"{INCOMING}c.txt",
    ]


@pytest.mark.parametrize(
    "extras",
    [
        pytest.param([], id="no-events"),
        pytest.param([None], id="none-extra"),
        pytest.param([{}], id="empty-extra"),
        pytest.param([{"from_trigger": True, "payload": None}], id="none-payload"),
        pytest.param([{"from_trigger": True, "payload": {"status": "success"}}], id="no-batch"),
        pytest.param([{"from_trigger": True, "payload": {"status": "success", "message_batch": None}}],
                     id="none-batch"),
        pytest.param([{"from_trigger": True, "payload": {"status": "success", "message_batch": []}}],
                     id="empty-batch"),
    ],
)
def test_messages_from_empty_extras(extras: list[Any]) -> None:
    assert messages_from_asset_event_extras(extras) == []


def test_messages_from_extras_skips_empty_ones_between_real_ones() -> None:
    message = sqs_message(s3_event(f"{INCOMING}a.txt", "2026-01-05T12:00:01.000Z"))
    extras = [None, {}, {"payload": {"message_batch": [message]}}, {"payload": None}]
    assert messages_from_asset_event_extras(extras) == [message]


# --- CatalogStore.check --------------------------------------------------------------------------------------

BAD_DROP = (product_text("Alpha Pump") + "Description: a second description\n").encode("utf-8")
BAD_LINE = 6  # the duplicated Description header


def test_check_quarantines_bad_and_keeps_newest_good(s3: Any, store: CatalogStore) -> None:
    bad, old_good, new_good = f"{INCOMING}bad.txt", f"{INCOMING}old.txt", f"{INCOMING}new.txt"
    s3.put_object(Bucket=BUCKET, Key=bad, Body=BAD_DROP)
    s3.put_object(Bucket=BUCKET, Key=old_good, Body=catalog_bytes("Alpha Pump"))
    s3.put_object(Bucket=BUCKET, Key=new_good, Body=catalog_bytes("Alpha Pump", "Beta Valve"))

    checked = store.check([old_good, bad, new_good])

    assert isinstance(checked, Checked)
    assert checked.catalog_key == new_good
    assert checked.superseded == [old_good]
    assert len(checked.quarantined) == 1
    entry = checked.quarantined[0]
    assert entry["key"] == bad
    assert entry["quarantine_key"] == "catalog/quarantine/bad.txt"
    assert f"line {BAD_LINE}" in entry["error"] and "second Description section" in entry["error"]

    # The bad drop moved: content at the quarantine key, original deleted, reason beside it.
    assert body(s3, "catalog/quarantine/bad.txt") == BAD_DROP
    assert keys_under(s3, INCOMING) == sorted([old_good, new_good])
    reason = json.loads(body(s3, "catalog/quarantine/bad.txt.reason.json"))
    assert reason["source"] == f"s3://{BUCKET}/{bad}"
    assert reason["quarantined_at"]
    assert [(i["rule"], i["line"]) for i in reason["issues"]] == [("duplicate_section", BAD_LINE)]
    assert "Alpha Pump" in reason["issues"][0]["message"]
    # Good drops are left where they are (stage/remove_drops handle them).
    assert body(s3, new_good) == catalog_bytes("Alpha Pump", "Beta Valve")

    assert checked.to_dict() == {
        "catalog_key": new_good, "superseded": [old_good], "quarantined": checked.quarantined,
    }
    json.dumps(checked.to_dict())  # XCom-serializable


def test_check_reason_lists_every_issue(s3: Any, store: CatalogStore) -> None:
    # A Name line without sections (line 1) and a product with an empty Description (header at line 4).
    data = b"Name: Lonely\n\nName: Empty Desc\nDescription:\nSafety_instructions: s\nConfiguration: c\nOperation: o\n"
    s3.put_object(Bucket=BUCKET, Key=f"{INCOMING}multi.txt", Body=data)
    checked = store.check([f"{INCOMING}multi.txt"])
    assert checked.catalog_key is None
    reason = json.loads(body(s3, "catalog/quarantine/multi.txt.reason.json"))
    rules = [(i["rule"], i["line"]) for i in reason["issues"]]
    assert ("missing_section", 1) in rules
    assert ("empty_section", 4) in rules
    assert len(rules) == 5  # four missing sections of "Lonely" + the empty Description


def test_check_oversize_drop_is_quarantined(s3: Any, settings: CatalogSettings) -> None:
    small = CatalogStore(s3, BUCKET, CatalogSettings(**{**settings.__dict__, "max_bytes": 50}), DATA_PREFIX)
    s3.put_object(Bucket=BUCKET, Key=f"{INCOMING}big.txt", Body=catalog_bytes("Alpha Pump"))
    checked = small.check([f"{INCOMING}big.txt"])
    assert checked.catalog_key is None
    reason = json.loads(body(s3, "catalog/quarantine/big.txt.reason.json"))
    assert [(i["rule"], i["line"]) for i in reason["issues"]] == [("oversize", None)]


def test_check_skips_missing_key(s3: Any, store: CatalogStore) -> None:
    good = f"{INCOMING}good.txt"
    s3.put_object(Bucket=BUCKET, Key=good, Body=catalog_bytes("Alpha Pump"))
    checked = store.check([f"{INCOMING}gone.txt", good, f"{INCOMING}also-gone.txt"])
    assert checked == Checked(good, [], [])
    assert keys_under(s3, "catalog/quarantine/") == []


def test_check_nothing_valid(s3: Any, store: CatalogStore) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{INCOMING}bad.txt", Body=b"")
    checked = store.check([f"{INCOMING}bad.txt", f"{INCOMING}missing.txt"])
    assert checked.catalog_key is None
    assert checked.superseded == []
    assert [q["key"] for q in checked.quarantined] == [f"{INCOMING}bad.txt"]
    assert store.check([]) == Checked(None, [], [])


# --- CatalogStore.stage / publish / current ------------------------------------------------------------------


def sample_bytes() -> bytes:
    return SAMPLE_CATALOG.read_bytes()


def test_stage_sample_catalog(s3: Any, store: CatalogStore) -> None:
    data = sample_bytes()
    catalog = parse_catalog(data, "sample")
    assert len(catalog.products) == 15
    key = f"{INCOMING}industrial_catalog.txt"
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)

    staged = store.stage(key)

    version_key = f"catalog/versions/{catalog.version}/industrial_catalog.txt"
    assert staged == {
        "catalog_version": catalog.version,
        "catalog_sha256": catalog.sha256,
        "version_key": version_key,
        "products": 15,
        "dropped_at": s3.head_object(Bucket=BUCKET, Key=key)["LastModified"].isoformat(),
        "stale": False,
        "changed": True,
    }
    assert len(catalog.version) == 12
    assert body(s3, version_key) == data
    assert body(s3, key) == data  # the drop itself stays until remove_drops

    documents = [k for k in keys_under(s3, DATA_PREFIX) if k.endswith(".txt")]
    metadata = [k for k in keys_under(s3, DATA_PREFIX) if k.endswith(".metadata.json")]
    assert len(documents) == 15
    assert len(metadata) == 15
    assert len(keys_under(s3, DATA_PREFIX)) == 30
    assert keys_under(s3, DATA_PREFIX) == sorted(documents + metadata)

    names = {p.name for p in catalog.products}
    seen = set()
    for doc_key in documents:
        assert doc_key.startswith(DATA_PREFIX)
        slug = doc_key[len(DATA_PREFIX):-len(".txt")]
        assert slug and slug == slug.lower() and " " not in slug
        attributes = json.loads(body(s3, doc_key + ".metadata.json"))["metadataAttributes"]
        assert attributes["catalog_version"] == catalog.version
        assert attributes["product_name"] in names
        document = body(s3, doc_key).decode("utf-8")
        assert attributes["product_name"] in document
        assert document.startswith(f"Product: {attributes['product_name']}")
        seen.add(attributes["product_name"])
    assert seen == names
    assert s3.head_object(Bucket=BUCKET, Key=documents[0])["ContentType"].startswith("text/plain")


def test_stage_slug_of_product_name(s3: Any, store: CatalogStore) -> None:
    key = f"{INCOMING}one.txt"
    s3.put_object(Bucket=BUCKET, Key=key, Body=catalog_bytes("Vortex Mixer VM-200 (Rev. B)"))
    store.stage(key)
    slug = _slug("Vortex Mixer VM-200 (Rev. B)")
    assert slug.startswith("vortex-mixer-vm-200-rev-b-")
    assert keys_under(s3, DATA_PREFIX) == [f"kb-data/{slug}.txt", f"kb-data/{slug}.txt.metadata.json"]


def test_stage_gives_every_product_its_own_document(s3: Any, store: CatalogStore) -> None:
    """Product names that differ only in punctuation are distinct products (the catalog parser accepts them),
    so each must keep its own document in the Knowledge Base."""
    key = f"{INCOMING}lookalikes.txt"
    s3.put_object(Bucket=BUCKET, Key=key, Body=catalog_bytes("Mixer A", "Mixer-A"))
    staged = store.stage(key)
    assert staged["products"] == 2
    documents = [k for k in keys_under(s3, DATA_PREFIX) if k.endswith(".txt")]
    names = {json.loads(body(s3, k + ".metadata.json"))["metadataAttributes"]["product_name"] for k in documents}
    assert names == {"Mixer A", "Mixer-A"}, (
        f"BUG: stage() staged {staged['products']} products but kb-data/ holds documents for {sorted(names)}: "
        "_slug() maps 'Mixer A' and 'Mixer-A' to the same key kb-data/mixer-a.txt, so one product silently "
        "overwrites the other"
    )


def test_stage_deletes_stale_documents_of_previous_version(s3: Any, store: CatalogStore) -> None:
    first, second = f"{INCOMING}v1.txt", f"{INCOMING}v2.txt"
    s3.put_object(Bucket=BUCKET, Key=first, Body=sample_bytes())
    staged1 = store.stage(first)
    store.publish(staged1, "job-1", "run-1")
    assert len(keys_under(s3, DATA_PREFIX)) == 30

    s3.put_object(Bucket=BUCKET, Key=second, Body=catalog_bytes("Vortex Mixer VM-200", "Brand New Widget"))
    staged2 = store.stage(second)

    assert staged2["changed"] is True
    assert staged2["catalog_version"] != staged1["catalog_version"]
    assert keys_under(s3, DATA_PREFIX) == [
        f"kb-data/{_slug('Brand New Widget')}.txt", f"kb-data/{_slug('Brand New Widget')}.txt.metadata.json",
        f"kb-data/{_slug('Vortex Mixer VM-200')}.txt", f"kb-data/{_slug('Vortex Mixer VM-200')}.txt.metadata.json",
    ]
    # The surviving product's document was rewritten with the new content and version.
    assert b"Vortex Mixer VM-200 description text." in body(s3, f"kb-data/{_slug('Vortex Mixer VM-200')}.txt")
    meta = json.loads(body(s3, f"kb-data/{_slug('Vortex Mixer VM-200')}.txt.metadata.json"))["metadataAttributes"]
    assert meta == {"product_name": "Vortex Mixer VM-200", "catalog_version": staged2["catalog_version"]}
    # Both versions are kept under versions/.
    assert keys_under(s3, "catalog/versions/") == sorted([staged1["version_key"], staged2["version_key"]])


def test_stage_removes_unknown_objects_under_data_prefix_only(s3: Any, store: CatalogStore) -> None:
    s3.put_object(Bucket=BUCKET, Key="kb-data/leftover.txt", Body=b"old")
    s3.put_object(Bucket=BUCKET, Key="kb-data/nested/leftover.txt", Body=b"old")
    s3.put_object(Bucket=BUCKET, Key="kb-data-archive/keep.txt", Body=b"keep")
    key = f"{INCOMING}one.txt"
    s3.put_object(Bucket=BUCKET, Key=key, Body=catalog_bytes("Alpha Pump"))
    store.stage(key)
    slug = _slug("Alpha Pump")
    assert keys_under(s3, DATA_PREFIX) == [f"kb-data/{slug}.txt", f"kb-data/{slug}.txt.metadata.json"]
    assert keys_under(s3, "kb-data-archive/") == ["kb-data-archive/keep.txt"]


def test_stage_same_content_after_publish_is_unchanged(s3: Any, store: CatalogStore, clock: Clock) -> None:
    key = f"{INCOMING}industrial_catalog.txt"
    s3.put_object(Bucket=BUCKET, Key=key, Body=sample_bytes())
    staged = store.stage(key)
    store.publish(staged, "job-1", "run-1")
    # Something outside the sync under the data prefix: an unchanged stage must not delete or rewrite anything.
    s3.put_object(Bucket=BUCKET, Key="kb-data/hand-edited.txt", Body=b"operator note")
    before = snapshot(s3, DATA_PREFIX)
    assert len(before) == 31

    clock.advance(60)
    again_key = f"{INCOMING}same-content-new-name.txt"
    s3.put_object(Bucket=BUCKET, Key=again_key, Body=sample_bytes())
    again = store.stage(again_key)

    assert again["changed"] is False
    assert again["catalog_version"] == staged["catalog_version"]
    assert again["products"] == 15
    assert snapshot(s3, DATA_PREFIX) == before  # same keys, ETags, LastModified and bodies
    # The drop is still versioned (under its own file name).
    assert again["version_key"] == f"catalog/versions/{staged['catalog_version']}/same-content-new-name.txt"
    assert body(s3, again["version_key"]) == sample_bytes()


def test_a_drop_older_than_the_held_one_is_not_synced(s3: Any, store: CatalogStore, clock: Clock) -> None:
    """Two drops whose notices reach separate runs out of order: the later drop stays in the KB."""
    older, newer = f"{INCOMING}monday.txt", f"{INCOMING}tuesday.txt"
    s3.put_object(Bucket=BUCKET, Key=older, Body=catalog_bytes("Alpha Pump"))
    clock.advance(5)
    s3.put_object(Bucket=BUCKET, Key=newer, Body=catalog_bytes("Alpha Pump", "Beta Valve"))
    held = store.stage(newer)  # the newer drop's run came first
    marker = store.publish(held, "job-1", "run-1")
    assert marker["dropped_at"] == s3.head_object(Bucket=BUCKET, Key=newer)["LastModified"].isoformat()
    before = snapshot(s3, DATA_PREFIX)

    late = store.stage(older)

    assert late["stale"] is True and late["changed"] is False
    assert snapshot(s3, DATA_PREFIX) == before  # the KB's documents untouched
    assert store.current() == marker
    assert body(s3, late["version_key"]) == catalog_bytes("Alpha Pump")  # kept under versions/
    # Uploaded again, it is the newest drop and syncs.
    clock.advance(5)
    s3.put_object(Bucket=BUCKET, Key=older, Body=catalog_bytes("Alpha Pump"))
    again = store.stage(older)
    assert again["stale"] is False and again["changed"] is True


def test_a_same_second_drop_and_a_rollback_from_versions_are_synced(s3: Any, store: CatalogStore,
                                                                     clock: Clock) -> None:
    first, second = f"{INCOMING}a.txt", f"{INCOMING}b.txt"
    s3.put_object(Bucket=BUCKET, Key=first, Body=catalog_bytes("Alpha Pump"))
    s3.put_object(Bucket=BUCKET, Key=second, Body=catalog_bytes("Alpha Pump", "Beta Valve"))  # same second
    store.publish(store.stage(first), "job-1", "run-1")
    staged = store.stage(second)  # not older than the held drop: event order decides, as within a batch
    assert staged["stale"] is False and staged["changed"] is True
    store.publish(staged, "job-2", "run-2")
    clock.advance(60)
    archived = f"catalog/versions/{parse_catalog(catalog_bytes('Alpha Pump'), 'x').version}/a.txt"
    rollback = store.stage(archived)  # a manual run with catalog_key = an archived version
    assert rollback["stale"] is False and rollback["changed"] is True and rollback["dropped_at"] is None
    assert rollback["version_key"] == archived
    store.publish(rollback, "job-3", "run-3")
    store.remove_drops([archived, first])
    assert body(s3, archived) == catalog_bytes("Alpha Pump")  # the archive is never deleted as a "drop"
    assert first not in keys_under(s3, INCOMING)


def test_stage_same_content_without_publish_restages(s3: Any, store: CatalogStore) -> None:
    # Until publish() records the version, the Knowledge Base does not hold it: staging again must re-ingest.
    key = f"{INCOMING}a.txt"
    s3.put_object(Bucket=BUCKET, Key=key, Body=catalog_bytes("Alpha Pump"))
    assert store.stage(key)["changed"] is True
    assert store.current() is None
    assert store.stage(key)["changed"] is True


def test_stage_revalidates_the_drop(s3: Any, store: CatalogStore) -> None:
    from tailor.exceptions import CatalogValidationError

    key = f"{INCOMING}replaced.txt"
    s3.put_object(Bucket=BUCKET, Key=key, Body=BAD_DROP)
    with pytest.raises(CatalogValidationError):
        store.stage(key)
    assert keys_under(s3, DATA_PREFIX) == []
    assert keys_under(s3, "catalog/versions/") == []


def test_publish_writes_current_marker(s3: Any, store: CatalogStore) -> None:
    key = f"{INCOMING}a.txt"
    s3.put_object(Bucket=BUCKET, Key=key, Body=catalog_bytes("Alpha Pump", "Beta Valve"))
    assert store.current() is None
    staged = store.stage(key)

    marker = store.publish(staged, "INGEST123", "manual__2026-01-05T12:00:00")

    stored = json.loads(body(s3, "catalog/current.json"))
    assert stored == marker
    assert stored["ingestion_job_id"] == "INGEST123"
    assert stored["run_id"] == "manual__2026-01-05T12:00:00"
    assert stored["catalog_version"] == staged["catalog_version"]
    assert stored["catalog_sha256"] == staged["catalog_sha256"]
    assert stored["version_key"] == staged["version_key"]
    assert stored["products"] == 2
    assert datetime.fromisoformat(stored["synced_at"]).tzinfo is not None
    assert store.current() == marker
    assert s3.head_object(Bucket=BUCKET, Key="catalog/current.json")["ContentType"] == "application/json"


def test_publish_without_ingestion_job_id(s3: Any, store: CatalogStore) -> None:
    key = f"{INCOMING}a.txt"
    s3.put_object(Bucket=BUCKET, Key=key, Body=catalog_bytes("Alpha Pump"))
    marker = store.publish(store.stage(key), None, "run-2")
    assert json.loads(body(s3, "catalog/current.json"))["ingestion_job_id"] is None
    assert marker["run_id"] == "run-2"


# --- remove_drops / incoming_keys ----------------------------------------------------------------------------


def test_remove_drops(s3: Any, store: CatalogStore) -> None:
    for name in ("a.txt", "b.txt", "c.txt"):
        s3.put_object(Bucket=BUCKET, Key=f"{INCOMING}{name}", Body=b"x")
    store.remove_drops([f"{INCOMING}a.txt", f"{INCOMING}c.txt"])
    assert keys_under(s3, INCOMING) == [f"{INCOMING}b.txt"]
    store.remove_drops([f"{INCOMING}already-gone.txt"])  # deleting a missing key is not an error
    store.remove_drops([])
    assert keys_under(s3, INCOMING) == [f"{INCOMING}b.txt"]


def test_incoming_keys_oldest_first_suffix_only(s3: Any, store: CatalogStore, clock: Clock) -> None:
    assert store.incoming_keys() == []
    s3.put_object(Bucket=BUCKET, Key=INCOMING, Body=b"")  # console "folder"
    for name in ("c.txt", "readme.md", "a.txt", "b.TXT", "b.txt"):
        s3.put_object(Bucket=BUCKET, Key=f"{INCOMING}{name}", Body=b"x")
        clock.advance(10)
    s3.put_object(Bucket=BUCKET, Key="catalog/quarantine/old.txt", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="catalog/incoming-other/x.txt", Body=b"x")

    assert store.incoming_keys() == [f"{INCOMING}c.txt", f"{INCOMING}a.txt", f"{INCOMING}b.txt"]


def test_incoming_keys_same_time_ordered_by_key(s3: Any, store: CatalogStore, clock: Clock) -> None:
    for name in ("b.txt", "a.txt"):
        s3.put_object(Bucket=BUCKET, Key=f"{INCOMING}{name}", Body=b"x")
    assert store.incoming_keys() == [f"{INCOMING}a.txt", f"{INCOMING}b.txt"]


def test_incoming_keys_paginates(s3: Any, store: CatalogStore, clock: Clock) -> None:
    for i in range(1005):
        s3.put_object(Bucket=BUCKET, Key=f"{INCOMING}{i:04d}.txt", Body=b"x")
    keys = store.incoming_keys()
    assert len(keys) == 1005
    assert keys[0] == f"{INCOMING}0000.txt" and keys[-1] == f"{INCOMING}1004.txt"


# --- what no Param or setting may read, move or delete ----------------------------------------------------------

PROTECTED = ["catalog/versions/a.txt", "catalog/current.json", "finetune/champion.json",
             "kb-data/vortex-mixer-1234.txt", "eval/run-1/judged.jsonl", "catalog/quarantine/old.txt",
             "catalog/incoming/../current.json", "catalog/incoming/", "catalog/versions/", "catalog/incoming/notes.md"]


@pytest.mark.parametrize("key", PROTECTED)
def test_catalog_key_outside_the_drop_and_version_folders_is_refused(key: str, settings: CatalogSettings) -> None:
    with pytest.raises(CatalogKeyError, match="is not a catalog file"):
        catalog_key_of(key, BUCKET, settings)


@pytest.mark.parametrize("key", ["catalog/current.json", "finetune/champion.json", "kb-data/doc.txt"])
def test_check_never_moves_or_deletes_an_object_a_param_names(s3: Any, store: CatalogStore, key: str) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")  # not a valid catalog: the old code "quarantined" it
    with pytest.raises(CatalogKeyError):
        store.check([key])
    assert body(s3, key) == b"{}" and keys_under(s3, "catalog/quarantine/") == []


def test_catalog_key_as_s3_uri_is_understood_or_refused(settings: CatalogSettings) -> None:
    assert catalog_key_of(f"s3://{BUCKET}/catalog/incoming/a.txt", BUCKET, settings) == "catalog/incoming/a.txt"
    assert catalog_key_of(" catalog/versions/abc/a.txt ", BUCKET, settings) == "catalog/versions/abc/a.txt"
    with pytest.raises(CatalogKeyError, match="names bucket 'other'"):
        catalog_key_of("s3://other/catalog/incoming/a.txt", BUCKET, settings)


def test_an_invalid_archived_version_is_reported_but_never_moved(s3: Any, store: CatalogStore) -> None:
    key = "catalog/versions/abc123/products.txt"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"not a catalog")
    checked = store.check([key])
    assert checked.catalog_key is None and checked.quarantined[0]["quarantine_key"] == key
    assert body(s3, key) == b"not a catalog" and keys_under(s3, "catalog/quarantine/") == []
    with pytest.raises(CatalogKeyError, match="only drops under catalog/incoming/ are moved"):
        store.quarantine(key, CatalogValidationError([]))


@pytest.mark.parametrize("prefix", ["", "kb-data", "/"])
def test_a_data_prefix_that_is_not_a_folder_is_refused_before_any_delete(s3: Any, settings: CatalogSettings,
                                                                          prefix: str) -> None:
    with pytest.raises(CatalogKeyError, match="non-empty folder"):
        CatalogStore(s3, BUCKET, settings, prefix)


def test_stage_deletes_nothing_outside_the_data_prefix(s3: Any, store: CatalogStore) -> None:
    others = ["catalog/current.json", "finetune/champion.json", "eval/run/judged.jsonl", "kb-data.txt", "kb-datax/a"]
    for key in others:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key=f"{INCOMING}one.txt", Body=catalog_bytes("Alpha Pump"))
    store.stage(f"{INCOMING}one.txt")
    assert all(body(s3, key) == b"{}" for key in others)


def test_two_products_sharing_a_document_key_are_rejected_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    import tailor.kb_sync as kb_sync

    catalog = parse_catalog(catalog_bytes("Alpha Pump", "Beta Valve"), "c.txt")
    assert len(document_keys(catalog, DATA_PREFIX)) == 2
    monkeypatch.setattr(kb_sync, "_slug", lambda name: "same")  # a hash collision, forced
    with pytest.raises(CatalogValidationError) as caught:
        document_keys(catalog, DATA_PREFIX)
    issue = caught.value.issues[0]
    assert issue.rule == "document_key_collision" and issue.line == 7
    assert '"Alpha Pump" (line 1) and "Beta Valve"' in issue.message and "kb-data/same.txt" in issue.message


def test_a_colliding_catalog_is_quarantined_at_validation(s3: Any, store: CatalogStore,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import tailor.kb_sync as kb_sync

    monkeypatch.setattr(kb_sync, "_slug", lambda name: "same")
    s3.put_object(Bucket=BUCKET, Key=f"{INCOMING}two.txt", Body=catalog_bytes("Alpha Pump", "Beta Valve"))
    checked = store.check([f"{INCOMING}two.txt"])
    assert checked.catalog_key is None and "would share the Knowledge Base document" in checked.quarantined[0]["error"]
    assert keys_under(s3, DATA_PREFIX) == []


def test_metadata_sidecar_of_the_longest_allowed_name_stays_far_under_10_kb() -> None:
    from tailor.kb_sync import METADATA_MAX_BYTES, document_metadata

    name = "\U0001f527" * 200  # 200 astral characters: JSON escapes each as a 12-byte surrogate pair
    catalog = parse_catalog(catalog_bytes(name), "c.txt")
    size = len(document_metadata(catalog.products[0], catalog.version).encode())
    assert size < METADATA_MAX_BYTES / 3, size


@pytest.mark.parametrize("key", PROTECTED + ["s3://tailor-bakeoff/kb-data/a.txt"])
def test_the_sync_dags_catalog_key_param_refuses_what_the_code_refuses(key: str) -> None:
    from airflow.sdk import Param

    from tailor_airflow.kb_sync import CATALOG_KEY_PARAM

    param: Param = CATALOG_KEY_PARAM["catalog_key"]
    with pytest.raises(Exception, match="does not match"):
        Param(key, **param.schema).resolve()
    for good in ("", "catalog/incoming/products.txt", "s3://tailor-bakeoff/catalog/versions/0123456789ab/p.txt"):
        assert Param(good, **param.schema).resolve() == good


# --- ingestion_verdict: what a finished ingestion job means for the sync ------------------------------------

JOB_IDS = {"ingestionJobId": "JOB1234567", "knowledgeBaseId": "KB12345678", "dataSourceId": "DS12345678"}
FILES = [f"s3://{BUCKET}/{DATA_PREFIX}product-{i}.txt" for i in range(5)]


def ingestion_job(status: str, failed: int | None = 0, scanned: int = 15, reasons: list[str] | None = None,
                  **statistics: Any) -> dict[str, Any]:
    stats = {"numberOfDocumentsScanned": scanned, "numberOfNewDocumentsIndexed": scanned - (failed or 0),
             "numberOfModifiedDocumentsIndexed": 0, "numberOfDocumentsDeleted": 0, **statistics}
    if failed is not None:
        stats["numberOfDocumentsFailed"] = failed
    job = {**JOB_IDS, "status": status, "statistics": stats}
    if reasons is not None:
        job["failureReasons"] = reasons
    return job


def aws_reason(reason: str, *uris: str) -> str:
    """A failureReasons entry in the shape observed from AWS (see localaws.bedrock_agent.failure_reason)."""
    return f"Encountered error: {reason} [Files: {', '.join(uris)}]. Call to Customer Source did not succeed."


def test_a_complete_job_without_failed_documents_may_publish() -> None:
    from tailor.kb_sync import ingestion_verdict

    verdict = ingestion_verdict(ingestion_job("COMPLETE", failed=0))
    assert (verdict.status, verdict.done, verdict.ok, verdict.final, verdict.documents_failed) == (
        "COMPLETE", True, True, False, 0)
    assert "JOB1234567" in verdict.message and "15 scanned, 15 new" in verdict.message
    assert "0 failed" in verdict.message


@pytest.mark.parametrize("failed", [None, 0])
def test_a_complete_job_without_the_failed_count_is_not_a_failure(failed: int | None) -> None:
    from tailor.kb_sync import ingestion_verdict

    assert ingestion_verdict(ingestion_job("COMPLETE", failed=failed)).ok is True


def test_a_complete_job_with_failed_documents_is_a_final_failure_that_says_what_to_do() -> None:
    from tailor.kb_sync import ingestion_verdict

    reason = aws_reason("Ignored 1 files due to invalid metadata attributes.", FILES[0])
    verdict = ingestion_verdict(ingestion_job("COMPLETE", failed=1, reasons=[reason]))
    assert (verdict.status, verdict.done, verdict.ok, verdict.final, verdict.documents_failed) == (
        "COMPLETE", True, False, True, 1)
    message = verdict.message
    assert "Bedrock ingestion job JOB1234567 (knowledge base KB12345678, data source DS12345678)" in message
    assert "ended COMPLETE, but 1 of 15 documents scanned FAILED to ingest" in message
    assert f'Failure reasons: "{reason}"' in message
    assert "The catalog version was NOT published" in message and "catalog/current.json is not advanced" in message
    assert "Check the documents named above" in message
    assert "clear start_ingestion with its downstream tasks" in message
    assert "keeps its previous version" not in message, "the KB now serves the new documents that did index"


def test_failure_reasons_are_bounded_first_few_then_how_many_more() -> None:
    from tailor.kb_sync import QUOTED_REASONS, REASON_CHARS, ingestion_verdict

    reasons = [aws_reason(f"problem {i}.", uri) for i, uri in enumerate(FILES)]
    reasons[0] = aws_reason("x" * (2 * REASON_CHARS), FILES[0])
    message = ingestion_verdict(ingestion_job("COMPLETE", failed=5, reasons=reasons)).message
    assert QUOTED_REASONS == 3
    assert f'"{reasons[0][:REASON_CHARS]}…"' in message and reasons[0] not in message
    assert f'"{reasons[1]}"' in message and f'"{reasons[2]}"' in message
    assert reasons[3] not in message and reasons[4] not in message
    assert "(and 2 more reasons)" in message
    assert "5 of 15 documents scanned FAILED" in message


def test_a_reason_that_is_a_json_encoded_list_is_unpacked() -> None:
    """Jobs have been reported with each failureReasons entry a JSON array of strings."""
    from tailor.kb_sync import failure_reason_lines, ingestion_verdict

    first, second = aws_reason("Ignored 1 files.", FILES[0]), aws_reason("Ignored 1 files.", FILES[1])
    reasons = [json.dumps([first, second]), "[not json", "  "]
    assert failure_reason_lines(reasons) == [first, second, "[not json"]
    message = ingestion_verdict(ingestion_job("COMPLETE", failed=2, reasons=reasons)).message
    assert f'"{first}"; "{second}"; "[not json"' in message


def test_failed_documents_without_reasons_still_fail() -> None:
    from tailor.kb_sync import ingestion_verdict

    verdict = ingestion_verdict(ingestion_job("COMPLETE", failed=2, scanned=0))
    assert verdict.ok is False and verdict.final is True
    assert "but 2 documents scanned FAILED" in verdict.message  # no "of 0": the count would be a lie
    assert "Failure reasons: no reason given" in verdict.message


def test_reasons_on_a_clean_complete_job_are_logged_as_warnings() -> None:
    from tailor.kb_sync import ingestion_verdict

    verdict = ingestion_verdict(ingestion_job("COMPLETE", failed=0, reasons=["metadata key ignored"]))
    assert verdict.ok is True and 'warnings: "metadata key ignored"' in verdict.message


@pytest.mark.parametrize("status", ["STARTING", "IN_PROGRESS", "SOME_NEW_STATE"])
def test_a_running_or_unknown_state_is_not_done(status: str) -> None:
    from tailor.kb_sync import ingestion_verdict

    verdict = ingestion_verdict(ingestion_job(status, failed=3))
    assert (verdict.done, verdict.ok, verdict.final) == (False, False, False)
    assert verdict.message.endswith(f"is {status}")


@pytest.mark.parametrize("status", ["FAILED", "STOPPING", "STOPPED"])
def test_a_failed_or_stopped_job_is_a_final_failure(status: str) -> None:
    from tailor.kb_sync import ingestion_verdict

    verdict = ingestion_verdict(ingestion_job(status, reasons=["Access denied", "Embedding model throttled"]))
    assert (verdict.done, verdict.ok, verdict.final) == (True, False, True)
    assert f"ended {status}: Access denied; Embedding model throttled. The Knowledge Base keeps" in verdict.message
    assert "clear start_ingestion with its downstream tasks" in verdict.message


@pytest.mark.parametrize(("job", "shown"), [({**JOB_IDS, "status": "TIMEOUT"}, "TIMEOUT"),
                                            ({}, "without a status"), (None, "without a status")])
def test_a_timeout_or_missing_status_is_a_retryable_failure(job: dict[str, Any] | None, shown: str) -> None:
    from tailor.kb_sync import ingestion_verdict

    verdict = ingestion_verdict(job)
    assert (verdict.done, verdict.ok, verdict.final) == (True, False, False)
    assert f"ended {shown}: no reason given" in verdict.message
    assert verdict.message.endswith("a retry waits on the same job again.")
