"""The same Redis cache as the worker, keyed by content hash (the real Redis of deploy/local/stack)."""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest
import redis

from consumer.cache import content_key
from consumer.work import ContentResult
from tests.images import encode, photo

pytestmark = pytest.mark.integration


def test_second_identical_body_is_a_cache_hit(stack, start_api):
    url = stack.env_vars()["IMAGEGATE_REDIS_URL"]
    api = start_api(IMAGEGATE_API_CACHE="true", IMAGEGATE_REDIS_URL=url)
    data = encode(photo(200, 150, seed=uuid.uuid4().int % 10_000), quality=91) + uuid.uuid4().bytes  # unique bytes
    sha = hashlib.sha256(data).hexdigest()

    first = api.score(data)
    assert first.status == 200, first
    body = first.json()
    assert body["cached"] is False
    key = content_key(body["model"]["version"], body["policy"]["version"], sha)  # the worker's key
    r = redis.Redis.from_url(url)
    deadline = time.monotonic() + 30
    while r.get(key) is None:  # written after the answer went out
        assert time.monotonic() < deadline, "the result never reached Redis"
        time.sleep(0.05)
    stored = ContentResult.from_json(r.get(key), sha)
    assert stored is not None and stored.signals == body["signals"]
    assert r.ttl(key) > 0

    second = api.score(data, query="role=gallery")
    assert second.status == 200, second
    again = second.json()
    assert again["cached"] is True and again["content_sha256"] == sha
    assert again["signals"] == body["signals"] and again["role"] == "gallery"
    assert api.metric("imagegate_images_inferred_total") == 1  # the model ran once
    assert api.metric("imagegate_cache_requests_total", {"op": "get", "result": "hit"}) == 1
    assert api.metric("imagegate_redis_up") == 1


def test_a_seller_side_reject_is_cached_too(stack, start_api):
    url = stack.env_vars()["IMAGEGATE_REDIS_URL"]
    api = start_api(IMAGEGATE_API_CACHE="true", IMAGEGATE_REDIS_URL=url)
    junk = b"not an image " + uuid.uuid4().bytes
    first = api.score(junk)
    assert first.status == 422 and first.json()["cached"] is False
    key = content_key(first.json()["model"]["version"], first.json()["policy"]["version"], hashlib.sha256(junk).hexdigest())
    r = redis.Redis.from_url(url)
    deadline = time.monotonic() + 30
    while r.get(key) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = api.score(junk)
    assert second.status == 422 and second.json()["cached"] is True
    assert second.json()["reasons"][0]["code"] == "unsupported_format"
