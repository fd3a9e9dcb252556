"""The published image_uploaded schema (deploy/schemas/) accepts exactly what the worker accepts:
one corpus of events, each labelled valid or invalid, must be accepted by both the JSON Schema
(Draft 2020-12, formats asserted) and `consumer.events.parse_uploaded`, or rejected by both. The
one exception JSON Schema cannot express (`schema_version: 1.0`) is listed and checked below. A
producer that validates against the schema then never sees the worker dead-letter an event the
schema passed, and never has a valid event refused by its own validator."""

from __future__ import annotations

import json

import jsonschema
import pytest

from consumer.events import InvalidEvent, parse_uploaded
from tests.deploy.tools import REPO

SCHEMA = json.loads((REPO / "deploy" / "schemas" / "image_uploaded.v1.schema.json").read_text())
G = {"event_id": "e-1", "image_id": "img-1", "url": "https://cdn.example.com/a.jpg"}
SHA = "0123456789abcdef" * 4

VALID = {
    "minimal": G,
    "every field": {**G, "schema_version": 1, "listing_id": "L-1", "seller_id": "S-1", "role": "gallery",
                    "policy": "lenient", "content_sha256": SHA, "occurred_at": "2026-12-05T10:00:00Z",
                    "trigger": "backfill"},
    "unknown fields are ignored": {**G, "future_field": {"x": [1, 2]}},
    "nulls for optional fields": {**G, "listing_id": None, "seller_id": None, "policy": None,
                                  "content_sha256": None, "occurred_at": None},
    "http": {**G, "url": "http://cdn.example.com/a.jpg"},
    "s3 (accepted, not fetched yet)": {**G, "url": "s3://bucket/key.jpg"},
    "file": {**G, "url": "file:///srv/images/a.jpg"},
    "scheme in capitals": {**G, "url": "HTTPS://cdn.example.com/a.jpg"},
    "one character after the scheme": {**G, "url": "https://x"},
    "url of 4096 characters": {**G, "url": "https://x/" + "a" * 4086},
    "id of 256 characters": {**G, "image_id": "i" * 256},
    "id with DEL and unicode": {**G, "image_id": "a\x7fb-ü-图"},
    "occurred_at with fraction and offset": {**G, "occurred_at": "2026-12-05T10:00:00.123456+02:00"},
    "occurred_at lower-case t and z": {**G, "occurred_at": "2026-12-05t10:00:00z"},
    "occurred_at 29 February of a leap year": {**G, "occurred_at": "2024-02-29T00:00:00-05:30"},
    "trigger replay": {**G, "trigger": "replay"},
}

INVALID = {
    "not an object": [G],
    "a string": "image",
    "no url": {k: v for k, v in G.items() if k != "url"},
    "no event_id": {k: v for k, v in G.items() if k != "event_id"},
    "event_id a number": {**G, "event_id": 7},
    "empty image_id": {**G, "image_id": ""},
    "image_id of 257 characters": {**G, "image_id": "i" * 257},
    "newline in image_id": {**G, "image_id": "a\nb"},
    "trailing newline in image_id": {**G, "image_id": "img-1\n"},
    "empty listing_id": {**G, "listing_id": ""},
    "url null": {**G, "url": None},
    "empty url": {**G, "url": ""},
    "url of 4097 characters": {**G, "url": "https://x/" + "a" * 4087},
    "ftp url": {**G, "url": "ftp://x/y"},
    "relative url": {**G, "url": "not a url"},
    "nothing after the scheme": {**G, "url": "https://"},
    "scheme with a prefix": {**G, "url": "xhttps://x/y"},
    "role unknown": {**G, "role": "hero"},
    "role null": {**G, "role": None},
    "trigger unknown": {**G, "trigger": "manual"},
    "sha256 in capitals": {**G, "content_sha256": SHA.upper()},
    "sha256 too short": {**G, "content_sha256": SHA[:-1]},
    "sha256 with a trailing newline": {**G, "content_sha256": SHA[:-1] + "\n"},
    "sha256 a number": {**G, "content_sha256": 5},
    "schema_version 2": {**G, "schema_version": 2},
    "schema_version a string": {**G, "schema_version": "1"},
    "schema_version true": {**G, "schema_version": True},
    "schema_version 1.5": {**G, "schema_version": 1.5},
    "schema_version null": {**G, "schema_version": None},
    "occurred_at words": {**G, "occurred_at": "yesterday"},
    "occurred_at a date": {**G, "occurred_at": "2026-12-05"},
    "occurred_at without an offset": {**G, "occurred_at": "2026-12-05T10:00:00"},
    "occurred_at with a space": {**G, "occurred_at": "2026-12-05 10:00:00Z"},
    "occurred_at without seconds": {**G, "occurred_at": "2026-12-05T10:00Z"},
    "occurred_at unix seconds as text": {**G, "occurred_at": "1700000000"},
    "occurred_at a number": {**G, "occurred_at": 1700000000},
    "occurred_at 30 February": {**G, "occurred_at": "2026-02-30T10:00:00Z"},
    "occurred_at offset +25:00": {**G, "occurred_at": "2026-12-05T10:00:00+25:00"},
    "occurred_at leap second": {**G, "occurred_at": "2026-12-31T23:59:60Z"},
    "occurred_at trailing newline": {**G, "occurred_at": "2026-12-05T10:00:00Z\n"},
}


# The one difference, and why: JSON Schema compares numbers by value, so no schema can accept 1 and
# refuse 1.0; the worker parses strictly and refuses 1.0 (tests/reliability/test_hostile_input.py
# holds it to that). The schema's description says to write an integer literal.
SCHEMA_ONLY = {"schema_version 1.0": {**G, "schema_version": 1.0}}


@pytest.fixture(scope="module")
def validator():
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    # Without rfc3339-validator installed jsonschema skips date-time silently; then this proves nothing.
    assert "date-time" in checker.checkers and not checker.conforms("2026-02-30T10:00:00Z", "date-time")
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    return jsonschema.Draft202012Validator(SCHEMA, format_checker=checker)


def worker_accepts(event) -> bool:
    try:
        parse_uploaded(json.dumps(event).encode())
    except InvalidEvent:
        return False
    return True


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_events_pass_both(validator, name):
    event = VALID[name]
    assert worker_accepts(event), "the worker refuses it"
    assert validator.is_valid(event), [e.message for e in validator.iter_errors(event)]


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_events_fail_both(validator, name):
    event = INVALID[name]
    assert not worker_accepts(event), "the worker accepts it"
    assert not validator.is_valid(event), "the schema accepts it"


def test_the_published_file_is_what_the_code_generates():
    from consumer.events import json_schemas

    assert SCHEMA == json_schemas()["image_uploaded.v1.schema.json"], "run `make schemas`"


@pytest.mark.parametrize("name", sorted(SCHEMA_ONLY))
def test_the_documented_difference_is_the_only_one_and_still_holds(validator, name):
    event = SCHEMA_ONLY[name]
    assert validator.is_valid(event) and not worker_accepts(event)
    assert "1.0" in SCHEMA["properties"]["schema_version"]["description"]
