"""The event contract: `image_uploaded` (in), `image_scored` (out) and DLQ headers.

This module is the one place the wire format is defined. It knows nothing of Kafka
clients so that producer tools, listing services' tests and the worker share it.
JSON Schemas under `deploy/schemas/` are generated from these models
(`python -m consumer.events --write deploy/schemas`) and a test keeps them current.

Versioning: every event carries `schema_version`. Additive changes keep the version
(unknown fields are ignored on input); a breaking change bumps it and the worker keeps
accepting the previous version for at least one release (`ACCEPTED_UPLOADED_VERSIONS`).
"""

from __future__ import annotations

import argparse
import enum
import json
import re
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator

SCHEMA_VERSION = 1
ACCEPTED_UPLOADED_VERSIONS = (1,)
URL_SCHEMES = ("https", "http", "s3", "file")
# Namespace for deterministic output event ids: uuid5(NS, source_event_id, model version, policy name and version).
_SCORED_NS = uuid.UUID("6f1d3c52-5a8e-4f0e-9a77-1b8f0f4e9d21")
_SHA256 = re.compile(r"[0-9a-f]{64}")  # fullmatch: "$" would let a trailing newline through

# The published schema says exactly what the parser accepts (tests/deploy/test_schema_agreement.py
# checks a corpus both ways). Patterns avoid "$": Python's re (which jsonschema uses) lets it match
# before a trailing newline, ECMA-262 does not; "no forbidden character anywhere" is written
# as `not: {pattern}`, which means the same in every engine.
_CONTROL = "[\\x00-\\x1f]"
Id = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$"),
               WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 256, "not": {"pattern": _CONTROL}})]
# RFC 3339 date-time with seconds and an offset (Z or +hh:mm), "T" between date and time, no leap
# second (Python's datetime has none). Calendar validity (no 30 February) is the `date-time` format.
_RFC3339 = ("^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
            "(\\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
OccurredAt = Annotated[datetime, WithJsonSchema({"type": "string", "format": "date-time", "pattern": _RFC3339,
                                                 "not": {"pattern": "\\s"}})]


def _url_pattern() -> str:
    """Any accepted scheme in any letter case, then "://" and at least one character."""
    cls = lambda ch: f"[{ch.lower()}{ch.upper()}]" if ch.isalpha() else re.escape(ch)  # noqa: E731
    return "^(?:" + "|".join("".join(cls(c) for c in scheme) for scheme in URL_SCHEMES) + ")://[\\s\\S]"


class ReasonCode(str, enum.Enum):
    """Stable reason codes. Extend, never rename: listing services switch on them."""

    UNREADABLE = "unreadable"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_LARGE = "too_large"
    FETCH_FAILED = "fetch_failed"
    LOW_RESOLUTION = "low_resolution"
    BAD_ASPECT_RATIO = "bad_aspect_ratio"
    BLURRY = "blurry"
    NOISY = "noisy"
    COMPRESSION_ARTIFACTS = "compression_artifacts"
    UNDEREXPOSED = "underexposed"
    OVEREXPOSED = "overexposed"
    LOW_CONTRAST = "low_contrast"
    BACKGROUND_NOT_WHITE = "background_not_white"
    PRODUCT_TOO_SMALL = "product_too_small"
    TEXT_OR_WATERMARK = "text_or_watermark"
    BORDER = "border"
    LOW_QUALITY = "low_quality"
    PRODUCT_CROPPED = "product_cropped"


class Decision(str, enum.Enum):
    ACCEPT = "accept"
    DEMOTE = "demote"
    REJECT = "reject"


class ImageUploaded(BaseModel):
    """A seller uploaded a photo; platform services publish this."""

    model_config = ConfigDict(extra="ignore", strict=True, title="image_uploaded")

    schema_version: int = Field(
        default=SCHEMA_VERSION, json_schema_extra={"enum": list(ACCEPTED_UPLOADED_VERSIONS)},
        description="Contract version of this event, written as an integer literal (1): the worker refuses 1.0, "
        "which JSON Schema cannot tell from 1.")
    event_id: Id = Field(description="Unique id of this event; used for idempotency.")
    image_id: Id = Field(description="Stable id of the image; the Kafka message key.")
    url: str = Field(min_length=1, max_length=4096, description="Where to fetch the image.",
                     json_schema_extra={"pattern": _url_pattern()})
    listing_id: Id | None = None
    seller_id: Id | None = None
    role: Literal["main", "gallery"] = "main"
    policy: Id | None = Field(default=None, description="Policy profile name; default profile if absent.")
    content_sha256: Annotated[str, WithJsonSchema({"type": "string", "minLength": 64, "maxLength": 64,
                                                   "not": {"pattern": "[^0-9a-f]"}})] | None = Field(
        default=None, description="Lower-case hex SHA-256 of the image bytes, if known: enables a cache hit before any fetch."
    )
    occurred_at: OccurredAt | None = Field(
        default=None, description="RFC 3339 time of the upload, with seconds and an offset (2026-12-05T10:00:00Z).")
    trigger: Literal["upload", "backfill", "replay"] = Field(
        default="upload",
        description="Why this event exists: a fresh seller upload, a re-score of the existing catalogue "
        "(`imagegate backfill`) or a DLQ replay. Copied to image_scored so listing services can tell them apart.",
    )

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _rfc3339(cls, v: Any) -> Any:
        # pydantic alone also takes "2026-12-05 10:00", a date without a time zone, or "1700000000".
        if not isinstance(v, str):
            return v  # None; anything else fails the strict datetime check with its own message
        if not re.fullmatch(_RFC3339[1:-1], v):
            raise ValueError("occurred_at must be an RFC 3339 date-time with seconds and an offset, "
                             "like 2026-12-05T10:00:00Z")
        try:
            return datetime.fromisoformat(v.upper())  # the checked shape; this adds calendar validity
        except ValueError as e:
            raise ValueError(f"occurred_at is not a real date and time: {e}") from None

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v not in ACCEPTED_UPLOADED_VERSIONS:
            raise ValueError(f"unsupported schema_version {v}; this worker accepts {list(ACCEPTED_UPLOADED_VERSIONS)}")
        return v

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str) -> str:
        scheme, sep, rest = v.partition("://")
        if not sep or not rest:
            raise ValueError("url must be absolute, like https://host/path")
        if scheme.lower() not in URL_SCHEMES:
            raise ValueError(f"url scheme {scheme!r} is not one of {list(URL_SCHEMES)}")
        return v

    @field_validator("content_sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is not None and not _SHA256.fullmatch(v):
            raise ValueError("content_sha256 must be 64 lower-case hex characters")
        return v


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: ReasonCode
    message: str = Field(description="Sentence a seller can act on.")
    value: float | str | None = None
    threshold: float | str | None = None


class ModelRef(BaseModel):
    name: str
    version: str


class PolicyRef(BaseModel):
    name: str
    version: str


class ImageScored(BaseModel):
    """The worker's verdict on one `image_uploaded` event."""

    model_config = ConfigDict(extra="forbid", title="image_scored")

    schema_version: int = SCHEMA_VERSION
    event_id: str = Field(description="Deterministic from source_event_id, model version and policy name and version: a "
                          "re-delivery has the same id, a re-score under another model or policy a new one.")
    source_event_id: str
    image_id: str
    listing_id: str | None = None
    seller_id: str | None = None
    role: Literal["main", "gallery"] = "main"
    content_sha256: str | None = Field(default=None, description="Absent when the image could not be fetched.")
    content_verified: bool = Field(
        default=True,
        description="True when content_sha256 is the hash of bytes this worker fetched; false when the result was "
        "served for the event's claimed hash without fetching (IMAGEGATE_TRUST_CLAIMED_SHA256).",
    )
    trigger: Literal["upload", "backfill", "replay"] = Field(default="upload", description="Copied from image_uploaded.")
    score: float = Field(ge=0, le=100, description="0-100, higher is better.")
    decision: Decision
    reasons: list[Reason] = Field(default_factory=list)
    signals: dict[str, float] = Field(
        default_factory=dict,
        description="Measured values: model head outputs (quality, blur, noise, ...) and cheap measurements (width, height, brightness, ...).",
    )
    model: ModelRef
    policy: PolicyRef
    cached: bool = Field(description="True when the result came from the cache or from an identical image scored at the same time.")
    scored_at: datetime
    timings: dict[str, float] = Field(default_factory=dict, description="Milliseconds per stage (fetch_ms, decode_ms, queue_ms, inference_ms, total_ms).")


class InvalidEvent(ValueError):
    """A message that is not a valid `image_uploaded`; the message says precisely why."""


def parse_uploaded(raw: bytes | None, max_bytes: int = 1 << 20) -> ImageUploaded:
    """Strictly parse one message value. Raises InvalidEvent with a message fit for the DLQ."""
    if raw is None:
        raise InvalidEvent("message has no value (tombstone)")
    if len(raw) > max_bytes:
        raise InvalidEvent(f"event is {len(raw)} bytes, limit is {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidEvent(f"event is not UTF-8: {e.reason} at byte {e.start}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidEvent(f"event is not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:  # e.g. 100k nested '[' fit in the byte limit
        raise InvalidEvent("event is not acceptable JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer literal over Python's 4300-digit conversion limit
        raise InvalidEvent(f"event is not acceptable JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(data).__name__}")
    try:
        return ImageUploaded.model_validate_json(text)
    except ValidationError as e:
        raise InvalidEvent(describe_validation_error(e)) from None


def describe_validation_error(e: ValidationError) -> str:
    parts = []
    for err in e.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "event"
        parts.append(f"{loc}: {err['msg']}")
    return "invalid image_uploaded: " + "; ".join(parts)


def scored_event_id(source_event_id: str, model_version: str, policy: PolicyRef) -> str:
    """Same input event + same model + same policy -> same output id, so re-deliveries are
    recognisable; a re-score under another model version or policy (profile or version) is a
    new verdict and gets a new id, so consumers that deduplicate by event_id keep it."""
    return str(uuid.uuid5(_SCORED_NS, "\x00".join((source_event_id, model_version, policy.name, policy.version))))


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


# --- DLQ ------------------------------------------------------------------------
# A DLQ record's value is the original payload, byte for byte (so it can be replayed);
# these headers say what went wrong and where it came from.
DLQ_HEADER_ERROR = "imagegate_error"
DLQ_HEADER_STAGE = "imagegate_error_stage"
DLQ_HEADER_TOPIC = "imagegate_source_topic"
DLQ_HEADER_PARTITION = "imagegate_source_partition"
DLQ_HEADER_OFFSET = "imagegate_source_offset"
DLQ_HEADER_FAILED_AT = "imagegate_failed_at"
DLQ_HEADER_ATTEMPTS = "imagegate_attempts"
# Set when the broker refused the original payload (e.g. over max.message.bytes): the value
# is then cut to what fits, and these say how to recognise the original.
DLQ_HEADER_TRUNCATED = "imagegate_truncated"
DLQ_HEADER_ORIGINAL_SIZE = "imagegate_original_size"
DLQ_HEADER_ORIGINAL_SHA256 = "imagegate_original_sha256"


def cloudevent_headers(event_id: str, event_type: str, source: str, time: datetime) -> list[tuple[str, bytes]]:
    """CloudEvents binary-mode attributes for Kafka (ce_ prefix)."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_type", event_type.encode()),
        ("ce_source", source.encode()),
        ("ce_time", time.isoformat().encode()),
        ("content-type", b"application/json"),
    ]


SCHEMAS: dict[str, type[BaseModel]] = {
    f"image_uploaded.v{SCHEMA_VERSION}.schema.json": ImageUploaded,
    f"image_scored.v{SCHEMA_VERSION}.schema.json": ImageScored,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for name, model in SCHEMAS.items():
        schema = model.model_json_schema(mode="validation" if model is ImageUploaded else "serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://imagegate.dev/schemas/{name}"
        out[name] = schema
    return out


def render_schema(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the event JSON Schemas generated from the code's models.")
    ap.add_argument("--write", type=Path, required=True, help="directory to write *.schema.json into")
    args = ap.parse_args(argv)
    args.write.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (args.write / name).write_text(render_schema(schema))
        print(f"wrote {args.write / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
