"""Property-based fuzzing of the two parsers that read attacker-controlled bytes.

- `consumer.events.parse_uploaded`: for ANY bytes and ANY JSON-ish structure, the only
  exception that may escape is InvalidEvent (the worker turns it into a DLQ record);
  anything else would be an unexpected crash of the poll loop's validation step.
- `consumer.decode.decode`: for ANY bytes, and for mutations of valid JPEG/PNG/WebP/GIF/
  BMP/TIFF files, the only exception that may escape is DecodeError (a seller-facing
  `unreadable` / `unsupported_format` / `too_large` reject).

10,000 examples each in the normal run. Set HYPOTHESIS_PROFILE=ci-quick to shorten locally.
"""

from __future__ import annotations

import io
import json
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from consumer.decode import DecodeError, DecodeLimits, decode
from consumer.events import ImageUploaded, InvalidEvent, parse_uploaded
from tests.images import encode, photo

pytestmark = pytest.mark.slow

N = int(os.environ.get("IMAGEGATE_FUZZ_EXAMPLES", "10000"))
FUZZ = settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                database=None)

FIELDS = ["schema_version", "event_id", "image_id", "url", "listing_id", "seller_id", "role", "policy",
          "content_sha256", "occurred_at"]

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                        st.text(max_size=50), st.sampled_from(["http://a/b.jpg", "file:///x", "main", "gallery",
                                                               "2026-01-01T00:00:00Z", "a" * 64, "\ud800", "1" * 5000]))
json_value = st.recursive(json_scalar, lambda kids: st.one_of(st.lists(kids, max_size=5),
                                                              st.dictionaries(st.text(max_size=10), kids, max_size=5)),
                          max_leaves=8)
# Mostly-valid events with each field possibly replaced by anything: reaches the field validators.
event_like = st.fixed_dictionaries({}, optional={f: json_value for f in FIELDS}).map(
    lambda d: {"event_id": "e", "image_id": "i", "url": "http://a/b.jpg", **d})


def only_invalid_event(raw: bytes) -> None:
    try:
        ev = parse_uploaded(raw, max_bytes=1 << 20)
    except InvalidEvent:
        return
    assert isinstance(ev, ImageUploaded)
    # Accepted events must be usable downstream: ids become Kafka keys/headers (UTF-8).
    ev.event_id.encode("utf-8"), ev.image_id.encode("utf-8"), ev.url.encode("utf-8")


@FUZZ
@given(st.binary(max_size=2000))
def test_parse_uploaded_arbitrary_bytes(raw):
    only_invalid_event(raw)


@FUZZ
@given(st.one_of(json_value, event_like))
def test_parse_uploaded_arbitrary_json_structures(value):
    for raw in (json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")):
        only_invalid_event(raw)


# -- decoder ------------------------------------------------------------------------------

LIMITS = DecodeLimits(max_pixels=4_000_000)


def preprocess(img: Image.Image):
    return torch.zeros(3, 8, 8)  # the decoder is under test here, not the model's transform


def _seeds() -> list[bytes]:
    p = photo(48, 32, seed=3)
    rgba = p.convert("RGBA")
    out = [encode(p, "JPEG", quality=80), encode(p, "JPEG", quality=80, progressive=True), encode(p, "PNG"),
           encode(rgba, "PNG"), encode(p, "WEBP", quality=70), encode(p.convert("P"), "GIF"), encode(p, "BMP"),
           encode(p, "TIFF"), encode(p.convert("CMYK"), "JPEG")]
    frames = [p.convert("P"), p.rotate(90).convert("P")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out.append(buf.getvalue())
    return out


SEEDS = _seeds()


def only_decode_error(data: bytes) -> None:
    try:
        d = decode(data, preprocess, 8, LIMITS)
    except DecodeError:
        return
    assert d.format in LIMITS.allowed_formats and d.signals["width"] > 0


@FUZZ
@given(st.binary(max_size=4096))
def test_decode_arbitrary_bytes(data):
    only_decode_error(data)


@st.composite
def mutated_image(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        if not data:
            break
        # Headers hold dimensions, chunk lengths and tables: mutate them more often.
        hi = len(data) - 1 if draw(st.booleans()) else min(len(data) - 1, 64)
        i = draw(st.integers(0, hi))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[i:i + draw(st.integers(1, 16))]
    return bytes(data)


@FUZZ
@given(mutated_image())
def test_decode_mutated_valid_images(data):
    only_decode_error(data)
