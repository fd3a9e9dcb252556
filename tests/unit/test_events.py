import json
from pathlib import Path

import jsonschema
import pytest

from consumer.events import (
    ImageScored,
    InvalidEvent,
    PolicyRef,
    ReasonCode,
    json_schemas,
    parse_uploaded,
    render_schema,
    scored_event_id,
)

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"event_id": "e-1", "image_id": "img-1", "url": "https://cdn.example.com/a.jpg"}


def raw(d) -> bytes:
    return json.dumps(d).encode()


def test_minimal_event_parses_with_defaults():
    ev = parse_uploaded(raw(GOOD))
    assert ev.schema_version == 1 and ev.role == "main" and ev.policy is None


def test_unknown_fields_are_ignored_for_forward_compatibility():
    ev = parse_uploaded(raw({**GOOD, "new_field": 1}))
    assert ev.event_id == "e-1"


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"\xff\xfe{", "not UTF-8"),
        (b"{nope", "not JSON"),
        (b"[1,2]", "JSON object"),
        (None, "tombstone"),
        (raw({k: v for k, v in GOOD.items() if k != "url"}), "url: Field required"),
        (raw({**GOOD, "event_id": 7}), "event_id: Input should be a valid string"),
        (raw({**GOOD, "url": "ftp://x/y"}), "scheme 'ftp'"),
        (raw({**GOOD, "url": "not a url"}), "must be absolute"),
        (raw({**GOOD, "role": "hero"}), "role"),
        (raw({**GOOD, "content_sha256": "ABC"}), "content_sha256"),
        (raw({**GOOD, "schema_version": 99}), "unsupported schema_version 99"),
        (raw({**GOOD, "occurred_at": "yesterday"}), "occurred_at"),
        (raw({**GOOD, "image_id": ""}), "image_id"),
    ],
)
def test_invalid_events_say_precisely_why(payload, fragment):
    with pytest.raises(InvalidEvent) as e:
        parse_uploaded(payload)
    assert fragment in str(e.value)


def test_oversized_event_rejected_before_parsing():
    with pytest.raises(InvalidEvent, match="limit is 1024"):
        parse_uploaded(raw({**GOOD, "listing_id": "x" * 2000}), max_bytes=1024)


P1 = PolicyRef(name="default", version="2026.11.3")


def test_scored_event_id_is_deterministic_per_model_version():
    assert scored_event_id("e-1", "1.0", P1) == scored_event_id("e-1", "1.0", P1)
    assert scored_event_id("e-1", "1.0", P1) != scored_event_id("e-1", "1.1", P1)
    assert scored_event_id("e-1", "1.0", P1) != scored_event_id("e-2", "1.0", P1)


def test_scored_event_id_changes_with_the_policy():
    """A re-score under a new policy version (or another profile) is a different verdict: before,
    both verdicts of one input under one model shared an id, and consumers deduplicating by
    event_id dropped the second."""
    base = scored_event_id("e-1", "1.0", P1)
    assert scored_event_id("e-1", "1.0", PolicyRef(name="default", version="2026.12.0")) != base
    assert scored_event_id("e-1", "1.0", PolicyRef(name="lenient", version="2026.11.3")) != base
    # the parts are separated, so shifting text between them cannot collide
    assert scored_event_id("e-1", "1.0", PolicyRef(name="a", version="bc")) != \
        scored_event_id("e-1", "1.0", PolicyRef(name="ab", version="c"))


def test_reason_codes_are_stable():
    # Extend, never rename: listing services switch on these strings.
    required = {"unreadable", "unsupported_format", "too_large", "fetch_failed", "low_resolution", "bad_aspect_ratio",
                "blurry", "noisy", "compression_artifacts", "underexposed", "overexposed", "low_contrast",
                "background_not_white", "product_too_small", "text_or_watermark", "border"}
    assert required <= {c.value for c in ReasonCode}


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_published_schemas_are_current(name):
    path = ROOT / "deploy" / "schemas" / name
    assert path.exists(), f"run `make schemas`: {path} missing"
    assert path.read_text() == render_schema(json_schemas()[name]), f"run `make schemas`: {name} is stale"


def test_uploaded_schema_accepts_and_rejects_like_the_parser():
    schema = json_schemas()["image_uploaded.v1.schema.json"]
    jsonschema.validate(GOOD, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"image_id": "x", "url": "https://x/y"}, schema)


def test_scored_schema_validates_a_real_body():
    body = ImageScored(
        event_id="x", source_event_id="e", image_id="i", score=55.5, decision="demote",
        reasons=[{"code": "blurry", "message": "image is blurry", "value": 0.8, "threshold": 0.5}],
        signals={"quality": 55.5}, model={"name": "m", "version": "1"}, policy={"name": "default", "version": "1"},
        cached=False, scored_at="2026-11-29T00:00:00Z",
    ).model_dump(mode="json")
    jsonschema.validate(body, json_schemas()["image_scored.v1.schema.json"])
    bad = {**body, "decision": "maybe"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json_schemas()["image_scored.v1.schema.json"])
