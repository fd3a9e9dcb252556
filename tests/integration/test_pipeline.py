"""End-to-end through the real broker and Redis: plumbing tests with a RANDOM-weights model.

The model here is `model.testing.write_random_model`: its scores mean nothing; these tests
check delivery, caching, ordering of commits, errors and shutdown, never quality.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import jsonschema
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from consumer.cache import content_key, image_key
from consumer.events import json_schemas
from producer_tools.publish import make_event

pytestmark = pytest.mark.integration
SCORED_SCHEMA = json_schemas()["image_scored.v1.schema.json"]


def committed_offsets(settings, partitions: int) -> dict[int, int]:
    c = Consumer({**settings.kafka_common(), "group.id": settings.group_id})
    try:
        tps = c.committed([TopicPartition(settings.topic_in, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def end_offsets(settings, partitions: int) -> dict[int, int]:
    c = Consumer({**settings.kafka_common(), "group.id": "probe"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(settings.topic_in, p), timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def test_event_scored_once_with_contract_fields_then_served_from_cache(pipeline, origin):
    w = pipeline.worker().start()
    out = pipeline.collector()
    first = make_event(f"{origin.url}/img/s0-sharp.jpg", image_id="img-a", listing_id="L1", seller_id="S1")
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    from producer_tools.kafka_clients import producer
    from producer_tools.publish import publish

    publish(producer(pipeline.settings), pipeline.settings.topic_in, [first], headers=[("traceparent", tp.encode())])
    assert out.wait_for({first.event_id}, 60) == set(), w.log_tail()
    out.poll(1.0)
    (body,) = out.scored  # exactly one output
    jsonschema.validate(body, SCORED_SCHEMA)
    assert body["source_event_id"] == first.event_id and body["image_id"] == "img-a" and body["listing_id"] == "L1"
    assert body["cached"] is False and body["decision"] in ("accept", "demote", "reject")
    assert body["model"]["name"] == "random-plumbing-only" and 0 <= body["score"] <= 100
    assert {"quality", "blur", "width", "height"} <= set(body["signals"])
    assert {"fetch_ms", "decode_ms", "inference_ms", "total_ms"} <= set(body["timings"])
    headers = out.headers[0]
    assert headers["ce_id"].decode() == body["event_id"] and headers["ce_type"] == b"dev.imagegate.image_scored.v1"
    assert headers["traceparent"].decode() == tp

    r = redis.Redis.from_url(pipeline.settings.redis_url)
    assert json.loads(r.get(image_key("img-a")))["event_id"] == body["event_id"]
    cached = json.loads(r.get(content_key(body["model"]["version"], body["policy"]["version"], body["content_sha256"])))
    assert cached["signals"] == body["signals"]
    assert r.ttl(image_key("img-a")) > 0

    inferred = w.metric("imagegate_images_inferred_total")
    assert inferred == 1
    # Same bytes, new event: served from the cache by the hash of the fetched bytes, without the model.
    second = make_event(f"{origin.url}/img/s0-sharp.jpg", image_id="img-b")
    # A claimed content_sha256 is only a hint: this URL answers 404, so whoever set the field
    # gets the 404's reject, never the verdict of the image whose hash they claimed.
    spoof = make_event(f"{origin.url}/img/does-not-matter.jpg", image_id="img-c", content_sha256=body["content_sha256"])
    pipeline.publish([second, spoof])
    assert out.wait_for({second.event_id, spoof.event_id}, 60) == set(), w.log_tail()
    by_src = {b["source_event_id"]: b for b in out.scored}
    b = by_src[second.event_id]
    assert b["cached"] is True and b["score"] == body["score"] and b["content_sha256"] == body["content_sha256"]
    assert b["content_verified"] is True
    s = by_src[spoof.event_id]
    assert s["decision"] == "reject" and s["reasons"][0]["code"] == "fetch_failed" and "HTTP 404" in s["reasons"][0]["message"]
    assert s["content_sha256"] is None and s["cached"] is False
    assert w.metric("imagegate_images_inferred_total") == inferred
    assert w.metric("imagegate_cache_requests_total", {"op": "get", "result": "hit"}) == 1
    assert w.stop() == 0


def test_claimed_hash_is_trusted_only_when_opted_in_and_then_says_unverified(pipeline, origin):
    w = pipeline.worker(IMAGEGATE_TRUST_CLAIMED_SHA256="true").start()
    out = pipeline.collector()
    first = make_event(f"{origin.url}/img/s0-sharp.jpg", image_id="img-a")
    pipeline.publish([first])
    assert out.wait_for({first.event_id}, 60) == set(), w.log_tail()
    body = out.scored[0]
    assert body["content_verified"] is True
    claimed = make_event(f"{origin.url}/img/does-not-matter.jpg", image_id="img-c", content_sha256=body["content_sha256"])
    pipeline.publish([claimed])
    assert out.wait_for({claimed.event_id}, 60) == set(), w.log_tail()
    b = {b["source_event_id"]: b for b in out.scored}[claimed.event_id]
    assert b["cached"] is True and b["score"] == body["score"] and b["content_sha256"] == body["content_sha256"]
    assert b["content_verified"] is False  # nobody fetched these bytes: the output says so
    assert origin.hits.get("/img/does-not-matter.jpg") is None  # no fetch at all
    assert w.stop() == 0


def test_thousand_events_across_four_partitions_none_lost_offsets_committed(pipeline, origin, images):
    names = sorted(p.name for p in images.iterdir())
    events = [make_event(f"{origin.url}/img/{names[i % len(names)]}", image_id=f"img-{i}") for i in range(1000)]
    pipeline.publish(events)
    out = pipeline.collector()
    t0 = time.monotonic()
    w = pipeline.worker(IMAGEGATE_MAX_BATCH_SIZE="16").start()
    missing = out.wait_for({e.event_id for e in events}, 240, w.alive)
    elapsed = time.monotonic() - t0
    assert missing == set(), f"{len(missing)} events lost\n{w.log_tail()}"
    counts = Counter(b["source_event_id"] for b in out.scored)
    assert set(counts) == {e.event_id for e in events} and max(counts.values()) == 1
    assert {b["decision"] for b in out.scored if b["signals"]["width"] == 80} == {"reject"}  # tiny.png: low_resolution
    print(f"\n1000 events (incl. worker start) in {elapsed:.1f}s = {1000 / elapsed:.0f} events/s; "
          f"images inferred: {w.metric('imagegate_images_inferred_total'):.0f}")
    assert w.stop() == 0
    ends = end_offsets(pipeline.settings, 4)
    assert sum(ends.values()) == 1000 and all(v > 0 for v in ends.values())  # all 4 partitions used
    assert committed_offsets(pipeline.settings, 4) == ends


def test_malformed_event_goes_to_dlq_404_is_rejected_and_our_outage_is_never_a_reject(pipeline, origin, stack):
    """A malformed event is dead-lettered; a 404 is the seller's (reject); an origin we cannot
    connect to is our trouble: retried after delays, then dead-lettered, never a reject."""
    w = pipeline.worker(IMAGEGATE_RETRY_DELAYS_S="[0.2, 0.4]").start()
    out = pipeline.collector()
    pipeline.publish_raw([b'{"event_id": "bad-1", "image_id": 5}', b"\xff not json"])
    dead = make_event("http://127.0.0.1:9/unreachable.jpg", image_id="img-dead")  # port 9: nothing listens
    missing_file = make_event(f"{origin.url}/img/nope.jpg", image_id="img-404")
    good = make_event(f"{origin.url}/img/s1-sharp.jpg", image_id="img-ok")
    pipeline.publish([dead, missing_file, good])
    assert out.wait_for({dead.event_id, missing_file.event_id, good.event_id}, 60) == set(), w.log_tail()
    deadline = time.monotonic() + 20
    while len(out.dlq) < 3 and time.monotonic() < deadline:
        out.poll(0.5)
    assert len(out.dlq) == 3
    dlq = sorted(out.dlq, key=lambda rec: (rec[1]["imagegate_source_partition"], int(rec[1]["imagegate_source_offset"])))
    by_stage = {h["imagegate_error_stage"]: (v, h) for v, h in out.dlq}
    invalid = sorted((rec for rec in dlq if rec[1]["imagegate_error_stage"] == b"validate"),
                     key=lambda rec: int(rec[1]["imagegate_source_offset"]))
    errors = [h["imagegate_error"].decode() for _, h in invalid]
    assert "image_id: Input should be a valid string" in errors[0] and "not UTF-8" in errors[1]
    assert invalid[0][0] == b'{"event_id": "bad-1", "image_id": 5}'  # original payload, byte for byte
    value, headers = by_stage[b"fetch"]
    assert json.loads(value)["event_id"] == dead.event_id
    # a DLQ record keeps the input's key (the partitioning of a replay), even when the value is not an event
    keys = {h["imagegate_error_stage"]: [] for _, h in out.dlq}
    for (_, h), key in zip(out.dlq, out.dlq_keys):
        keys[h["imagegate_error_stage"]].append(key)
    assert keys == {b"validate": [b"raw", b"raw"], b"fetch": [b"img-dead"]}
    assert b"not the seller's problem" in headers["imagegate_error"] and headers["imagegate_attempts"] == b"3"
    by_src = {b["source_event_id"]: b for b in out.scored}
    assert dead.event_id not in by_src  # no seller-facing verdict for our outage
    b = by_src[missing_file.event_id]
    assert b["decision"] == "reject" and b["reasons"][0]["code"] == "fetch_failed" and "HTTP 404" in b["reasons"][0]["message"]
    assert by_src[good.event_id]["decision"] in ("accept", "demote", "reject") and by_src[good.event_id]["signals"]
    # 3 attempts of 1 try + 2 quick retries each, and 2 delayed retries
    assert w.metric("imagegate_retries_total", {"stage": "fetch"}) == 3 * 2 + 2
    assert w.metric("imagegate_events_dlq_total") == 3 and w.alive()
    assert w.stop() == 0


def test_sigterm_mid_stream_then_restart_loses_nothing(pipeline, origin, images):
    names = sorted(p.name for p in images.iterdir())
    events = [make_event(f"{origin.url}/img/{names[i % len(names)]}",
                         image_id=f"img-{i}") for i in range(600)]
    out = pipeline.collector()
    w1 = pipeline.worker(IMAGEGATE_MAX_IN_FLIGHT="64", IMAGEGATE_MAX_BATCH_SIZE="4").start()
    pipeline.publish(events)
    deadline = time.monotonic() + 60
    while len(out.scored) < 50 and time.monotonic() < deadline:
        out.poll(0.2)
    assert w1.stop() == 0, w1.log_tail()  # graceful: drains in-flight work, commits, exits 0
    done_before = len(out.source_ids())
    assert done_before < len(events), "stream finished before SIGTERM; test did not test anything"
    w2 = pipeline.worker().start()
    missing = out.wait_for({e.event_id for e in events}, 180, w2.alive)
    assert missing == set(), f"{len(missing)} lost\n{w2.log_tail()}"
    counts = Counter(b["source_event_id"] for b in out.scored)
    dups = sum(c - 1 for c in counts.values())
    print(f"\nSIGTERM after {done_before} done; duplicates after restart: {dups}")
    assert dups == 0  # a graceful stop drains and commits what it finished: nothing is delivered twice
    assert w2.stop() == 0
    assert committed_offsets(pipeline.settings, 4) == end_offsets(pipeline.settings, 4)


def test_redis_down_mid_stream_scoring_continues(pipeline, origin, images, stack):
    names = sorted(p.name for p in images.iterdir())
    w = pipeline.worker(IMAGEGATE_REDIS_TIMEOUT_S="0.2").start()
    out = pipeline.collector()
    before = [make_event(f"{origin.url}/img/{n}", image_id=f"pre-{n}") for n in names]
    pipeline.publish(before)
    assert out.wait_for({e.event_id for e in before}, 60) == set()
    stack.run("stop", "redis")
    try:
        during = [make_event(f"{origin.url}/img/{names[i % len(names)]}", image_id=f"during-{i}") for i in range(100)]
        pipeline.publish(during)
        assert out.wait_for({e.event_id for e in during}, 120, w.alive) == set(), w.log_tail()
        assert w.metric("imagegate_redis_up") == 0
        assert w.metric("imagegate_cache_requests_total", {"result": "error"}) >= 1
    finally:
        stack.run("start", "redis")
    after = [make_event(f"{origin.url}/img/{names[0]}", image_id="after")]
    pipeline.publish(after)
    assert out.wait_for({after[0].event_id}, 60) == set()
    deadline = time.monotonic() + 20
    while w.metric("imagegate_redis_up") != 1 and time.monotonic() < deadline:
        pipeline.publish([make_event(f"{origin.url}/img/{names[1]}")])
        time.sleep(1)
    assert w.metric("imagegate_redis_up") == 1  # the cache comes back by itself
    assert w.alive() and w.stop() == 0


@pytest.mark.parametrize("garbage", [b"not json", b"[1, 2]", b'{"content_sha256": "x", "signals": {"quality": "high"}}',
                                     b'{"signals": {}}'])
def test_malformed_cache_entry_is_a_miss_not_an_error(pipeline, origin, images, garbage):
    import hashlib

    data = (images / "s2-sharp.jpg").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    r = redis.Redis.from_url(pipeline.settings.redis_url)
    w = pipeline.worker().start()
    out = pipeline.collector()
    probe = make_event(f"{origin.url}/img/s2-blurry.jpg")
    pipeline.publish([probe])
    assert out.wait_for({probe.event_id}, 60) == set()
    body = out.scored[0]
    r.set(content_key(body["model"]["version"], body["policy"]["version"], sha), garbage)
    ev = make_event(f"{origin.url}/img/s2-sharp.jpg", content_sha256=sha)
    pipeline.publish([ev])
    assert out.wait_for({ev.event_id}, 60) == set(), w.log_tail()
    scored = {b["source_event_id"]: b for b in out.scored}[ev.event_id]
    assert scored["cached"] is False and scored["signals"]["width"] == 640 and out.dlq == []
    fixed = json.loads(r.get(content_key(body["model"]["version"], body["policy"]["version"], sha)))
    assert fixed["content_sha256"] == sha  # overwritten with a good entry
    assert w.stop() == 0
