"""The mechanisms behind "latency you can promise" (issue 24, part 3), checked by what they do,
never by how long they take (bench/run.py measures that):

- a consume batch's claimed-hash lookups are one Redis round trip (MGET), counted by Redis itself;
- decode runs on its own threads, never more at once than configured, not on the fetch threads;
- a forward takes at most the model's chunk, so results leave after each forward.

The chain runs in-process (so the test can see its threads and batches) on the real Redis of the
local stack and a real local origin; the model is the random-weights plumbing model, wrapped only
to record where and with what it is called.
"""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
import redis

from producer_tools.publish import make_event

pytestmark = pytest.mark.integration


class Recording:
    """The plumbing model, recording the threads that preprocess (decode) and the rows of each forward."""

    def __init__(self, real):
        self._real = real
        self._lock = threading.Lock()
        self.decode_threads: set[str] = set()
        self.decoding = 0
        self.most_decoding = 0
        self.forwards: list[int] = []

    def __getattr__(self, name):
        return getattr(self._real, name)

    def preprocess(self, img):
        with self._lock:
            self.decode_threads.add(threading.current_thread().name)
            self.decoding += 1
            self.most_decoding = max(self.most_decoding, self.decoding)
        try:
            time.sleep(0.02)  # long enough that several decodes would overlap if allowed to
            return self._real.preprocess(img)
        finally:
            with self._lock:
                self.decoding -= 1

    def predict(self, batch):
        self.forwards.append(len(batch))
        return self._real.predict(batch)


class InProcess:
    """build_pipeline with real Redis; outcomes collected from the ordered emitter."""

    def __init__(self, settings, predictor):
        from consumer.cache import ResultCache
        from consumer.health import Health
        from consumer.offsets import OffsetTracker
        from consumer.ordering import Emitter
        from consumer.pipeline import build_pipeline
        from consumer.policy import Policy

        self.s = settings
        self.policy = Policy.from_file(settings.policy_file, settings.default_policy)
        self.cache = ResultCache(settings.redis_url, 3600, 1.0, 2.0, predictor.version, self.policy.version)
        self.tracker = OffsetTracker()
        self.epoch = self.tracker.assign("in", 0)
        self.outcomes: list = []
        self.emitter = Emitter(self.outcomes.append, lambda src: True)
        self.halt = threading.Event()
        self.pipe = build_pipeline(settings, predictor, self.policy, self.cache, self.emitter, self.tracker,
                                   Health(60.0), self.halt)
        self.pipe.start()
        self._offset = 0

    def items(self, events):
        from consumer.events import parse_uploaded
        from consumer.work import Source, WorkItem

        out = []
        for ev in events:
            raw = ev.model_dump_json().encode()
            src = Source("in", 0, self._offset, self.epoch, ev.image_id.encode(), raw)
            self.tracker.start("in", 0, self._offset, self.epoch)
            self.emitter.take_slot(src)
            item = WorkItem(src)
            item.event = parse_uploaded(raw)
            out.append(item)
            self._offset += 1
        return out

    def wait(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.outcomes) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.outcomes) == n, [(o.dlq_stage, o.dlq_error) for o in self.outcomes if o.scored is None]

    def close(self) -> None:
        self.halt.set()
        self.pipe.stop()
        self.cache.close()


@pytest.fixture
def plumbing(plumbing_model):
    import model

    return model.load(plumbing_model, "cpu")


def test_claimed_hashes_of_a_consume_batch_are_one_mget(pipeline, plumbing):
    """50 re-sent images, all cached: Redis sees one MGET and no GET; all 50 are served from cache."""
    from consumer.work import ContentResult

    s = pipeline.settings.model_copy(update={"trust_claimed_sha256": True})
    run = InProcess(s, plumbing)
    try:
        shas = [hashlib.sha256(f"img-{i}".encode()).hexdigest() for i in range(50)]
        for h in shas:
            run.cache.put_content(ContentResult(h, {"quality": 80.0}, run.pipe.infer.model_ref))
        r = redis.Redis.from_url(s.redis_url)
        r.config_resetstat()
        run.pipe.submit(run.items([make_event(f"http://127.0.0.1:9/{i}.jpg", image_id=f"hit-{i}", content_sha256=h)
                                   for i, h in enumerate(shas)]))
        run.wait(50)
        stats = r.info("commandstats")
        assert stats.get("cmdstat_mget", {}).get("calls") == 1, stats
        assert "cmdstat_get" not in stats, stats  # the v1 path: one GET per event
        assert all(o.scored is not None and o.scored.cached and not o.scored.content_verified for o in run.outcomes)
    finally:
        run.close()


def test_a_batch_of_misses_is_still_one_mget_and_goes_on_to_fetch(pipeline, plumbing, origin):
    """Claimed hashes Redis does not know: the one MGET misses, every event is fetched and scored."""
    s = pipeline.settings.model_copy(update={"trust_claimed_sha256": True})
    run = InProcess(s, plumbing)
    try:
        r = redis.Redis.from_url(s.redis_url)
        r.config_resetstat()
        events = [make_event(f"{origin.url}/distinct/{i}.jpg", image_id=f"miss-{i}", content_sha256="0" * 63 + str(i))
                  for i in range(6)]
        run.pipe.submit(run.items(events))
        run.wait(6)
        assert r.info("commandstats")["cmdstat_mget"]["calls"] == 1
        assert all(o.scored is not None and not o.scored.cached for o in run.outcomes)
    finally:
        run.close()


def test_decode_runs_on_its_own_threads_never_more_at_once_than_configured(pipeline, plumbing, origin):
    rec = Recording(plumbing)
    s = pipeline.settings.model_copy(update={"decode_threads": 2, "fetch_concurrency": 16})
    run = InProcess(s, rec)
    try:
        run.pipe.submit(run.items([make_event(f"{origin.url}/distinct/{100 + i}.jpg", image_id=f"d-{i}")
                                   for i in range(24)]))
        run.wait(24)
        assert all(o.scored is not None for o in run.outcomes)
        assert rec.decode_threads and all(n.startswith("decode-") for n in rec.decode_threads), rec.decode_threads
        assert rec.most_decoding <= 2  # v1: up to one decode per fetch thread (16) at once
    finally:
        run.close()


def test_a_forward_takes_at_most_the_models_chunk(plumbing):
    """Ten images waiting, max_batch_size 32: forwards of 4, 4, 2 (the CPU chunk), each emitted on its own."""
    import numpy as np
    from PIL import Image

    from consumer.batcher import Batcher
    from consumer.health import Health
    from consumer.steps.infer import Infer
    from consumer.work import Source, WorkItem

    rec = Recording(plumbing)
    assert rec.chunk == 4
    batcher = Batcher(32, 0, 100)
    halt = threading.Event()
    current: list[WorkItem] = []
    infer = Infer(rec, batcher, Health(60.0), halt, done=current.append, failed=lambda it, e: None)
    pixels = plumbing.preprocess(Image.fromarray(np.full((48, 64, 3), 128, np.uint8)))
    for i in range(10):
        it = WorkItem(Source("in", 0, i, 1, None, None))
        it.pixels, it.sha256 = pixels, f"{i:064x}"
        batcher.put(it, halt)
    infer.thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(current) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        halt.set()
        infer.thread.join(5)
    assert rec.forwards == [4, 4, 2]
    assert [it.source.offset for it in current] == list(range(10))


def test_the_worker_serves_re_sent_images_with_mget_not_one_get_per_event(pipeline, origin):
    """End to end (worker subprocess, real Kafka): 120 re-sent images with their claimed hash are served
    from the cache with no GET at all; the MGETs are at most one per consume batch, far fewer than events."""
    w = pipeline.worker(IMAGEGATE_TRUST_CLAIMED_SHA256="true").start()
    out = pipeline.collector()
    first = [make_event(f"{origin.url}/distinct/{200 + i}.jpg", image_id=f"first-{i}") for i in range(6)]
    pipeline.publish(first)
    assert out.wait_for({e.event_id for e in first}, 120, w.alive) == set()
    shas = [b["content_sha256"] for b in out.scored]
    r = redis.Redis.from_url(pipeline.settings.redis_url)
    r.config_resetstat()
    again = [make_event(f"{origin.url}/distinct/{200 + i % 6}.jpg", image_id=f"again-{i}", content_sha256=shas[i % 6])
             for i in range(120)]
    pipeline.publish(again)
    assert out.wait_for({e.event_id for e in again}, 120, w.alive) == set()
    served = [b for b in out.scored if b["image_id"].startswith("again-")]
    assert len(served) == 120 and all(b["cached"] and not b["content_verified"] for b in served)
    stats = r.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
    # Redis counts the commands a script runs too: the sink's latest-result script (one EVALSHA per
    # event) does one GET of the image record. A per-event lookup would add 120 GETs more.
    scripts = calls.get("evalsha", 0) + calls.get("eval", 0)
    assert scripts >= 120 and calls.get("get", 0) == scripts, calls
    assert 1 <= calls["mget"] < 120, calls
