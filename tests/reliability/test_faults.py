"""Fault injection against the real broker and Redis (deploy/local/stack), with exact reconciliation.

Each scenario streams >= 2,000 `image_uploaded` events through real worker processes while
something breaks, then checks that every input event_id has an output (image_scored or a
DLQ record): lost must be 0. Duplicates are counted and bounded; the table row (scenario,
in, out, lost, duplicates, recovery time) is printed and summarised at the end of the run.

The model is the random-weights plumbing model. Nine in ten events name an image no other
event has (`/distinct/<n>.jpg`), so they go through fetch, decode and the model; one in ten
repeats one of a dozen images (a cache hit after its first time). The point is delivery. "Recovery" = seconds from the end of the fault (the kill, or the broker/Redis
being back) until outputs flow again; it is reported, never asserted (no wall-clock thresholds).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time

import pytest

from producer_tools.publish import make_event
from tests.reliability.conftest import Progress, reconcile

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 2000
# The classic protocol with a short session timeout: the kill -9 scenario exercises the
# cooperative-sticky path quickly; the 3-worker scenario runs the default KIP-848 protocol
# with the broker's default session timeout (45 s), i.e. production recovery times.
FAST_GROUP = {"IMAGEGATE_GROUP_PROTOCOL": "classic", "IMAGEGATE_KAFKA__session.timeout.ms": "6000",
              "IMAGEGATE_KAFKA__heartbeat.interval.ms": "1000"}


def stream(origin, images, names, n: int = N, repeat: float = 0.1, rng=None):
    """n events: mostly distinct images (fetch -> decode -> model), a few repeats (cache hits)."""
    rng = rng or random.Random(5)
    sha = {name: hashlib.sha256((images / name).read_bytes()).hexdigest() for name in names}
    out = []
    for i in range(n):
        if rng.random() < repeat:
            name = names[i % len(names)]
            out.append(make_event(f"{origin.url}/img/{name}", image_id=f"img-{i}", content_sha256=sha[name]))
        else:
            out.append(make_event(f"{origin.url}/distinct/{i}.jpg", image_id=f"img-{i}"))
    return out


class Publisher(threading.Thread):
    """Publishes events at a steady rate in the background, like live upload traffic.

    The producer is the operator tool's (idempotent, acks=all); through a broker outage it
    buffers and retries, so every event is eventually in the topic exactly once."""

    def __init__(self, pipeline, events, per_s: float, chunk: int = 50):
        super().__init__(daemon=True)
        self.pipeline, self.events, self.per_s, self.chunk = pipeline, events, per_s, chunk
        self.error: BaseException | None = None
        self.published = 0

    def run(self):
        from producer_tools.kafka_clients import producer
        from producer_tools.publish import publish

        try:
            p = producer(self.pipeline.settings)
            t0 = time.monotonic()
            for i in range(0, len(self.events), self.chunk):
                batch = self.events[i:i + self.chunk]
                self.published += publish(p, self.pipeline.settings.topic_in, batch)
                wait = t0 + (i + len(batch)) / self.per_s - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
        except BaseException as e:  # surfaced by the test
            self.error = e

    def finish(self, timeout: float = 120) -> None:
        self.join(timeout)
        assert not self.is_alive(), "publisher stuck"
        assert self.error is None, f"publisher failed: {self.error!r}"
        assert self.published == len(self.events)


def committed_equals_end(settings, partitions: int) -> bool:
    from tests.integration.test_pipeline import committed_offsets, end_offsets

    ends = end_offsets(settings, partitions)
    committed = committed_offsets(settings, partitions)
    return all(committed[p] == end for p, end in ends.items() if end > 0)  # empty partitions have no commit


def finish_all(progress: Progress, ids: set[str], timeout: float, alive=lambda: True) -> None:
    progress.until(lambda: ids <= progress.c.source_ids(), timeout, alive)


def test_kill_9_three_times_with_restarts(pipeline, origin, images, stream_images):
    rng = random.Random(11)
    events = stream(origin, images, stream_images, rng=rng)
    ids = {e.event_id for e in events}
    env = {**FAST_GROUP, "IMAGEGATE_MAX_IN_FLIGHT": "64", "IMAGEGATE_MAX_AWAITING_ACK": "64"}
    progress = Progress(pipeline.collector())
    w = pipeline.worker(**env).start()
    pub = Publisher(pipeline, events, per_s=80)
    pub.start()
    recoveries = []
    # Kill at random points spread over the stream, then restart at once.
    targets = sorted(rng.uniform(lo, hi) for lo, hi in ((0.10, 0.30), (0.40, 0.60), (0.70, 0.85)))
    for frac in targets:
        assert progress.until(lambda: progress.done() >= frac * N, 120, w.alive), w.log_tail()
        w.kill()  # SIGKILL: no drain, no commit
        t_kill = time.time()
        w = pipeline.worker(**env).start()
        assert progress.until(lambda: progress.first_scored_after(t_kill) is not None, 120, w.alive), w.log_tail()
        recoveries.append(progress.first_scored_after(t_kill))
    pub.finish()
    finish_all(progress, ids, 180, w.alive)
    row = reconcile("kill -9 x3 + restart", [e.event_id for e in events], progress, max(recoveries),
                    note="recovery = max over 3 kills (incl. process start + rejoin)")
    assert row.lost == 0, w.log_tail()
    assert progress.c.dlq == []  # a crash is our trouble: nothing may be dead-lettered because of it
    # Re-deliveries are bounded by what was in flight (64 in the chain + 64 at the producer)
    # plus what was acknowledged but not yet auto-committed (commit interval 1 s at <= the
    # publish rate) per kill.
    assert row.duplicates <= 3 * (64 + 64 + 2 * 80)
    assert w.stop() == 0
    assert committed_equals_end(pipeline.settings, 4)


def test_broker_stopped_20s_mid_stream(pipeline, origin, images, stream_images, stack):
    events = stream(origin, images, stream_images)
    ids = {e.event_id for e in events}
    progress = Progress(pipeline.collector())
    w = pipeline.worker(IMAGEGATE_MAX_IN_FLIGHT="128", IMAGEGATE_MAX_AWAITING_ACK="128").start()
    pub = Publisher(pipeline, events, per_s=100)
    pub.start()
    try:
        assert progress.until(lambda: progress.done() >= 0.3 * N, 120, w.alive), w.log_tail()
        stack.run("stop", "kafka")
        time.sleep(20)
        assert w.alive(), "worker died while the broker was down\n" + w.log_tail()
    finally:
        stack.run("start", "kafka")
    t_back = time.monotonic()
    pub.finish(180)
    finish_all(progress, ids, 240, w.alive)
    assert w.alive(), w.log_tail()
    row = reconcile("broker down 20 s, restarted", [e.event_id for e in events], progress,
                    progress.first_output_after(t_back), note="recovery from broker ready")
    assert row.lost == 0, w.log_tail()
    assert progress.c.dlq == []  # a broker outage never dead-letters events
    assert row.duplicates <= 128 + 128  # in the chain or awaiting delivery when the broker went away
    assert w.stop() == 0
    assert committed_equals_end(pipeline.settings, 4)


def test_redis_stopped_and_restarted_mid_stream(pipeline, origin, images, stream_images, stack):
    events = stream(origin, images, stream_images)
    ids = {e.event_id for e in events}
    progress = Progress(pipeline.collector())
    w = pipeline.worker(IMAGEGATE_REDIS_TIMEOUT_S="0.2", IMAGEGATE_REDIS_RETRY_AFTER_S="1").start()
    pub = Publisher(pipeline, events, per_s=150)
    pub.start()
    try:
        assert progress.until(lambda: progress.done() >= 0.3 * N, 120, w.alive), w.log_tail()
        stack.run("stop", "redis")
        t_stop = time.monotonic()
        n_at_stop = progress.done()
        # Scoring continues without the cache: outputs keep arriving while Redis is down.
        assert progress.until(lambda: progress.done() >= n_at_stop + 200, 60, w.alive), w.log_tail()
        stall = progress.first_output_after(t_stop)
        time.sleep(max(0.0, 8 - (time.monotonic() - t_stop)))
        assert w.metric("imagegate_redis_up") == 0
    finally:
        stack.run("start", "redis")
    t_back = time.monotonic()
    pub.finish()
    finish_all(progress, ids, 180, w.alive)
    # The cache comes back by itself at the next Redis operation; the stream may have ended
    # during the outage, so send a few more events until the worker has used Redis again.
    deadline = time.monotonic() + 30
    while w.metric("imagegate_redis_up") != 1 and time.monotonic() < deadline:
        more = stream(origin, images, stream_images, n=2, rng=random.Random(len(events)))
        for k, e in enumerate(more):
            e.image_id = f"after-{len(events)}-{k}"
        pipeline.publish(more)
        events += more
        progress.poll(1.0)
    finish_all(progress, {e.event_id for e in events}, 60, w.alive)
    row = reconcile("redis down ~8 s, restarted", [e.event_id for e in events], progress,
                    progress.first_output_after(t_back), note=f"outputs continued {stall:.2f}s after the stop")
    assert row.lost == 0 and row.duplicates == 0, w.log_tail()  # Redis trouble never causes re-delivery
    assert progress.c.dlq == []  # ...and never dead-letters an event (Redis is only a cache)
    assert w.metric("imagegate_redis_up") == 1
    assert w.stop() == 0
    assert committed_equals_end(pipeline.settings, 4)


def test_misbehaving_origin_slow_hanging_resetting_and_500s(pipeline, origin, images, stream_images):
    """Origin trouble is ours, never the seller's: hangs, resets and trickles past the deadline are
    retried after delays and then dead-lettered with the reason; a 500 outage that ends within the
    retry schedule ends scored. No event is lost and none becomes a seller-facing reject."""
    rng = random.Random(3)
    origin.hang_s = 20
    origin.outage.set()  # /outage/ answers 500 until cleared mid-stream
    kinds = {"img": 0, "slow": 0, "hang": 0, "reset": 0, "outage": 0}
    events, kind_of = [], {}
    small = [n for n in stream_images if n.endswith(".png")]  # trickle route: small files
    for i in range(N):
        r = rng.random()
        kind = "slow" if r < 0.015 else "hang" if r < 0.025 else "reset" if r < 0.045 else "outage" if r < 0.095 else "img"
        name = rng.choice(small) if kind == "slow" else stream_images[i % len(stream_images)]
        ev = make_event(f"{origin.url}/{kind}/{name}", image_id=f"img-{i}")  # no content_sha256: always fetched
        events.append(ev)
        kind_of[ev.event_id] = kind
        kinds[kind] += 1
    ids = {e.event_id for e in events}
    progress = Progress(pipeline.collector())
    w = pipeline.worker(IMAGEGATE_FETCH_TIMEOUT_S="2", IMAGEGATE_FETCH_RETRIES="2", IMAGEGATE_FETCH_BACKOFF_MS="200",
                        IMAGEGATE_FETCH_CONCURRENCY="32", IMAGEGATE_RETRY_DELAYS_S="[2, 4, 30]").start()
    pub = Publisher(pipeline, events, per_s=100)
    pub.start()
    assert progress.until(lambda: progress.done() >= 0.4 * N, 180, w.alive), w.log_tail()
    origin.outage.clear()
    t_back = time.monotonic()
    pub.finish()
    finish_all(progress, ids, 300, w.alive)
    row = reconcile("origin slow/hang/reset/500s", [e.event_id for e in events], progress,
                    progress.first_output_after(t_back), note=" ".join(f"{k}={v}" for k, v in kinds.items()))
    assert row.lost == 0, w.log_tail()
    by_kind: dict[str, set[str]] = {}
    for b in progress.c.scored:
        outcome = b["reasons"][0]["code"] if b["content_sha256"] is None else "scored"
        by_kind.setdefault(kind_of[b["source_event_id"]], set()).add(outcome)
    for value, headers in progress.c.dlq:
        assert headers["imagegate_error_stage"] == b"fetch" and b"not the seller's problem" in headers["imagegate_error"]
        by_kind.setdefault(kind_of[json.loads(value)["event_id"]], set()).add("dlq")
    assert by_kind["img"] == {"scored"}
    assert by_kind["hang"] == {"dlq"} and by_kind["reset"] == {"dlq"}  # ours: never a `fetch_failed` reject
    assert by_kind["slow"] == {"dlq"}  # 256 B per 0.2 s never beats a 2 s transfer deadline
    assert by_kind["outage"] == {"scored"}  # the 500s end within the retry schedule: all scored on their bytes
    assert w.stop() == 0


@pytest.mark.parametrize("pipeline", [6], indirect=True)
def test_three_workers_one_killed_one_added_on_six_partitions(pipeline, origin, images, stream_images):
    events = stream(origin, images, stream_images)
    ids = {e.event_id for e in events}
    env = {"IMAGEGATE_MAX_IN_FLIGHT": "64"}  # production defaults: KIP-848, broker session timeout 45 s
    progress = Progress(pipeline.collector())
    ws = [pipeline.worker(**env).start() for _ in range(3)]
    pub = Publisher(pipeline, events, per_s=80)
    pub.start()
    assert progress.until(lambda: progress.done() >= 0.3 * N, 120), ws[0].log_tail()
    assert progress.until(lambda: all(w.metric("imagegate_assigned_partitions") >= 1 for w in ws), 60)
    ws[1].kill()  # its partitions move to the survivors after the session timeout
    t_kill = time.monotonic()
    survivors = [ws[0], ws[2]]
    assert progress.until(lambda: sum(w.metric("imagegate_assigned_partitions") for w in survivors) == 6, 120)
    rebalanced = time.monotonic() - t_kill
    assert progress.until(lambda: progress.done() >= 0.55 * N, 120), ws[0].log_tail()
    ws.append(pipeline.worker(**env).start())  # joins: another rebalance
    pub.finish()
    live = [w for w in ws if w.alive()]
    finish_all(progress, ids, 180, lambda: all(w.alive() for w in live))
    row = reconcile("3 workers/6 partitions, -1 +1", [e.event_id for e in events], progress, rebalanced,
                    note="recovery = kill -> survivors own all 6 partitions (KIP-848, session timeout 45 s)")
    assert row.lost == 0, "\n".join(w.log_tail(15) for w in live)
    assert progress.c.dlq == []
    assert row.duplicates <= 64 + 2 * 80 + 3 * 64  # the killed worker's in-flight + uncommitted; revokes commit
    assigned = [w.metric("imagegate_assigned_partitions") for w in live]
    assert sum(assigned) == 6 and all(a >= 1 for a in assigned), assigned
    for w in live:
        assert w.stop() == 0
    assert committed_equals_end(pipeline.settings, 6)


def test_poison_event_is_isolated_to_the_dlq_without_blocking_its_partition(pipeline, origin, images, stream_images,
                                                                             plumbing_model):
    """A model that raises on one particular input (think: a CUDA error or NaN assert triggered by
    one image). The worker runs in-process so its predictor can be that model; Kafka and Redis
    are real. The batch containing the poison fails, the worker isolates items, retries the
    poison with backoff, then dead-letters it; every other event on the SAME partition is
    scored and the committed offset moves past the poison."""
    import io

    import numpy as np
    from PIL import Image

    import model
    from consumer.policy import Policy
    from consumer.worker import Worker

    real = model.load(plumbing_model, "cpu")
    marker = real.preprocess(Image.new("RGB", (200, 200), (255, 0, 255)))

    class PoisonedModel:
        def __init__(self):
            self.calls = 0

        def __getattr__(self, name):
            return getattr(real, name)

        def predict(self, batch):
            self.calls += 1
            for row in batch:
                if row.shape == marker.shape and np.array_equal(row, marker):
                    raise RuntimeError("device-side assert triggered (poison input)")
            return real.predict(batch)

    buf = io.BytesIO()
    Image.new("RGB", (200, 200), (255, 0, 255)).save(buf, "PNG")
    (images / "poison.png").write_bytes(buf.getvalue())

    rng = random.Random(9)
    events = stream(origin, images, stream_images, rng=rng)
    # Everything on one partition (one key), poison in the middle.
    poison = make_event(f"{origin.url}/img/poison.png", image_id="img-poison")
    events.insert(N // 2, poison)
    from producer_tools.kafka_clients import producer
    from producer_tools.publish import publish

    p = producer(pipeline.settings)
    for ev in events:
        ev.image_id = "same-key"  # one key -> one partition: the poison must not block it
    publish(p, pipeline.settings.topic_in, events)

    progress = Progress(pipeline.collector())
    settings = pipeline.settings.model_copy(update={"max_batch_size": 8, "metrics_port": 0})
    worker = Worker(settings, PoisonedModel(), Policy.from_file(settings.policy_file, settings.default_policy))
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    try:
        finish_all(progress, {e.event_id for e in events}, 180, t.is_alive)
    finally:
        worker.stop()
        t.join(60)
    row = reconcile("poison event (model raises)", [e.event_id for e in events], progress, None,
                    note="1 DLQ'd after retries; same partition")
    assert row.lost == 0 and row.duplicates == 0
    (value, headers), = progress.c.dlq
    import json

    assert json.loads(value)["event_id"] == poison.event_id
    assert headers["imagegate_error_stage"] == b"inference" and b"poison input" in headers["imagegate_error"]
    assert headers["imagegate_attempts"] == str(settings.processing_retries + 1).encode()
    assert len(progress.c.scored) == len(events) - 1
    assert not t.is_alive()
    assert committed_equals_end(pipeline.settings, 4)  # the partition moved past the poison
