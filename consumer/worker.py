"""The worker: Kafka in -> validate -> cache -> fetch -> decode -> batch -> model -> policy -> sink.

Threads and the way data flows (one direction only):

  poll loop (main thread) --submit--> fetch pool (fetch + cache + decode)
      --Batcher (bounded)--> inference thread (model + policy) --> sink thread (Redis + produce)
      --delivery report--> OffsetTracker --> store_offsets (poll loop) --> commit

Backpressure: the Batcher is bounded, so a slow model stalls fetch threads; in-flight
events then reach `max_in_flight` and the poll loop pauses its partitions until the
pipeline drains to half. Nothing is committed before the broker acknowledged the output.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

from consumer import metrics
from consumer.batcher import Batcher
from consumer.cache import ResultCache
from consumer.config import Settings
from consumer.decode import DecodeError, DecodeLimits, decode
from consumer.events import InvalidEvent, ModelRef, parse_uploaded
from consumer.fetch import Fetcher, FetchError, FetchLimits
from consumer.offsets import OffsetTracker
from consumer.policy import Policy, Verdict
from consumer.sink import Sink
from consumer.work import WorkItem, build_scored, merge_signals

log = logging.getLogger("imagegate.worker")
events_log = logging.getLogger("imagegate.events")  # one line per finished event (IMAGEGATE_LOG_EVENTS)


class SingleFlight:
    """Identical content in flight is scored once; the others wait for the leader's result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[WorkItem]] = {}

    def join(self, sha: str, item: WorkItem) -> bool:
        """True if `item` leads (must do the work); False if it was parked behind a leader."""
        with self._lock:
            if sha in self._waiting:
                self._waiting[sha].append(item)
                return False
            self._waiting[sha] = []
            return True

    def finish(self, sha: str) -> list[WorkItem]:
        with self._lock:
            return self._waiting.pop(sha, [])


def build_fetcher(s: Settings) -> Fetcher:
    limits = FetchLimits(
        allowed_schemes=tuple(s.allowed_schemes), allow_networks=tuple(s.allow_networks), file_root=s.file_root,
        timeout_s=s.fetch_timeout_s, connect_timeout_s=s.fetch_connect_timeout_s, max_bytes=s.fetch_max_bytes,
        max_redirects=s.fetch_max_redirects, retries=s.fetch_retries, backoff_ms=s.fetch_backoff_ms, user_agent=s.user_agent,
    )
    return Fetcher(limits, on_retry=lambda stage: metrics.RETRIES.labels(stage).inc())


class Worker:
    def __init__(self, settings: Settings, predictor: Any, policy: Policy, health: metrics.Health | None = None):
        s = self.settings = settings
        self.predictor = predictor
        self.policy = policy
        self.model_ref = ModelRef(name=predictor.name, version=predictor.version)
        self.health = health or metrics.Health(s.stall_after_s)
        self.health.model_loaded = True
        metrics.MODEL_INFO.info({"model_name": predictor.name, "model_version": predictor.version,
                                 "policy_version": policy.version, "device": str(predictor.device)})
        metrics.watch_gpu(predictor.device)
        metrics.MAX_IN_FLIGHT.set(s.max_in_flight)
        self.fetcher = build_fetcher(s)
        self.decode_limits = DecodeLimits(max_pixels=s.max_pixels, allowed_formats=tuple(s.allowed_formats))
        self.cache = ResultCache(s.redis_url, s.cache_ttl_s, s.redis_timeout_s, s.redis_retry_after_s,
                                 predictor.version, policy.version)
        self.tracker = OffsetTracker()
        self.flight = SingleFlight()
        self.batcher: Batcher[WorkItem] = Batcher(s.max_batch_size, s.max_batch_delay_ms, s.decode_queue_size)
        metrics.INFERENCE_QUEUE.set_function(self.batcher.qsize)
        self.stop_event = threading.Event()  # stop taking new work
        self._halt = threading.Event()  # stop pipeline threads
        self._paused = False
        self._assigned: set[tuple[str, int]] = set()
        self._pool = ThreadPoolExecutor(max_workers=s.fetch_concurrency, thread_name_prefix="fetch")
        self._infer_thread = threading.Thread(target=self._inference_loop, name="inference", daemon=True)
        common = s.kafka_common()
        self.sink = Sink(common, s.topic_out, s.topic_dlq, s.source, self.cache, self._done)
        self.consumer = Consumer({
            "group.id": s.group_id,
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,  # we store only contiguous completed offsets
            "auto.offset.reset": "earliest",
            "auto.commit.interval.ms": 1000,
            "statistics.interval.ms": 5000,
            "error_cb": self._on_error,
            "stats_cb": self._on_stats,
            "logger": logging.getLogger("imagegate.kafka"),  # librdkafka logs as JSON lines too
            **common,
        })

    # -- lifecycle ------------------------------------------------------------------
    def run(self) -> None:
        """Blocks until stop() is called (SIGTERM/SIGINT), then shuts down cleanly."""
        s = self.settings
        self.sink.start()
        self._infer_thread.start()
        self.consumer.subscribe([s.topic_in], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("worker started", extra={"topic": s.topic_in, "group": s.group_id, "model": self.model_ref.model_dump(),
                                          "policy_version": self.policy.version})
        try:
            while not self.stop_event.is_set():
                self.health.beat()
                self._store_offsets()
                self._flow_control()
                msgs = self.consumer.consume(num_messages=s.consume_batch, timeout=s.consume_timeout_s)
                for msg in msgs:
                    try:
                        self._accept(msg)
                    except Exception as e:  # never let one message take the loop down
                        log.exception("unexpected error accepting message")
                        self.sink.dead_letter(WorkItem(msg.topic(), msg.partition(), msg.offset(), msg.value(),
                                                       [], msg.key()), "consume", f"{type(e).__name__}: {e}")
        finally:
            self._shutdown()

    def stop(self) -> None:
        self.stop_event.set()

    def _shutdown(self) -> None:
        s = self.settings
        deadline = time.monotonic() + s.shutdown_timeout_s
        log.info("shutting down: draining in-flight work", extra={"in_flight": self.tracker.in_flight()})
        while self.tracker.in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.tracker.in_flight()
        self._halt.set()
        self.sink.stop(max(1.0, deadline - time.monotonic()))
        self._store_offsets()
        self._commit()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._infer_thread.join(timeout=5)
        self.consumer.close()
        self.cache.close()
        log.info("worker stopped", extra={"uncommitted_in_flight": left})

    # -- poll loop ------------------------------------------------------------------
    def _accept(self, msg) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.error("consume error", extra={"error": str(err)})
            return
        metrics.EVENTS_CONSUMED.inc()
        self.health.broker_ok = True
        item = WorkItem(msg.topic(), msg.partition(), msg.offset(), msg.value(), list(msg.headers() or []), msg.key())
        self.tracker.start(item.topic, item.partition, item.offset)
        metrics.IN_FLIGHT.set(self.tracker.in_flight())
        try:
            item.event = parse_uploaded(item.value, self.settings.event_max_bytes)
        except InvalidEvent as e:
            metrics.EVENTS_INVALID.inc()
            self.sink.dead_letter(item, "validate", str(e))
            return
        self._pool.submit(self._process, item)

    def _flow_control(self) -> None:
        n = self.tracker.in_flight()
        metrics.IN_FLIGHT.set(n)
        limit = self.settings.max_in_flight
        assignment = [TopicPartition(t, p) for t, p in self._assigned]
        if not self._paused and n >= limit and assignment:
            self.consumer.pause(assignment)
            self._paused = True
            metrics.PAUSED.set(1)
            log.info("paused consumption: in-flight at bound", extra={"in_flight": n})
        elif self._paused and n <= limit // 2:
            self.consumer.resume(assignment)
            self._paused = False
            metrics.PAUSED.set(0)
            log.info("resumed consumption", extra={"in_flight": n})

    def _store_offsets(self, keys: list[tuple[str, int]] | None = None) -> None:
        todo = [(t, p, o) for t, p, o in self.tracker.to_store(keys) if (t, p) in self._assigned]
        if not todo:
            return
        try:
            self.consumer.store_offsets(offsets=[TopicPartition(t, p, o) for t, p, o in todo])
        except KafkaException as e:
            log.warning("store_offsets failed", extra={"error": str(e)})

    def _commit(self) -> None:
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as e:
            if e.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit failed", extra={"error": str(e)})

    # -- rebalance callbacks (run inside consume() on the main thread) ------------------
    def _on_assign(self, consumer, partitions) -> None:
        for tp in partitions:
            self._assigned.add((tp.topic, tp.partition))
            self.tracker.assign(tp.topic, tp.partition)
        if self._paused:  # newly assigned partitions obey the current flow-control state
            consumer.pause(partitions)
        self.health.assigned = len(self._assigned)
        self.health.broker_ok = True
        metrics.ASSIGNED.set(len(self._assigned))
        log.info("partitions assigned", extra={"partitions": [f"{tp.topic}[{tp.partition}]" for tp in partitions]})

    def _on_revoke(self, consumer, partitions) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        deadline = time.monotonic() + self.settings.revoke_timeout_s
        while self.tracker.in_flight_for(keys) and time.monotonic() < deadline:
            time.sleep(0.02)  # pipeline + sink threads keep completing meanwhile
        self._store_offsets(keys)
        self._commit()
        dropped = self.tracker.in_flight_for(keys)
        for k in keys:
            self.tracker.forget(*k)
            self._assigned.discard(k)
            try:
                metrics.LAG.remove(k[0], str(k[1]))
            except KeyError:
                pass
        self.health.assigned = len(self._assigned)
        metrics.ASSIGNED.set(len(self._assigned))
        log.info("partitions revoked", extra={"partitions": [f"{t}[{p}]" for t, p in keys], "unfinished_redelivered": dropped})

    def _on_lost(self, consumer, partitions) -> None:
        for tp in partitions:
            self.tracker.forget(tp.topic, tp.partition)
            self._assigned.discard((tp.topic, tp.partition))
            try:
                metrics.LAG.remove(tp.topic, str(tp.partition))
            except KeyError:
                pass
        self.health.assigned = len(self._assigned)
        metrics.ASSIGNED.set(len(self._assigned))
        log.warning("partitions lost (no commit possible)", extra={"partitions": [f"{tp.topic}[{tp.partition}]" for tp in partitions]})

    def _on_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.health.broker_ok = False
        log.warning("kafka client error", extra={"error": str(err)})

    def _on_stats(self, stats_json: str) -> None:
        try:
            stats = json.loads(stats_json)
            for topic, t in stats.get("topics", {}).items():
                for pid, p in t.get("partitions", {}).items():
                    if pid == "-1" or (topic, int(pid)) not in self._assigned:
                        continue
                    lag = p.get("consumer_lag", -1)
                    if lag >= 0:
                        metrics.LAG.labels(topic, pid).set(lag)
            self.health.broker_ok = any(b.get("state") == "UP" for b in stats.get("brokers", {}).values())
        except (ValueError, KeyError, TypeError):
            pass

    # -- completion ------------------------------------------------------------------
    def _done(self, item: WorkItem, body: dict[str, Any] | None) -> None:
        """Delivery report: the broker has the output, so the input offset may be committed."""
        self.tracker.complete(item.topic, item.partition, item.offset)
        e2e = time.monotonic() - item.consumed_at
        metrics.E2E_SECONDS.observe(e2e)
        if body is not None:
            metrics.EVENTS_SCORED.labels(str(body["cached"]).lower()).inc()
            metrics.DECISIONS.labels(body["decision"]).inc()
            for r in body["reasons"]:
                metrics.REASONS.labels(r["code"]).inc()
            metrics.SCORE.observe(body["score"])
        extra = {"event_id": item.event.event_id if item.event else None,
                 "image_id": item.event.image_id if item.event else None,
                 "stage": "done", "outcome": body["decision"] if body else "dlq",
                 "topic": item.topic, "partition": item.partition, "offset": item.offset}
        if body is not None:
            extra["timings"] = {**body["timings"], "acked_ms": round(e2e * 1000, 3)}
            extra["cached"] = body["cached"]
            extra["score"] = body["score"]
            extra["reasons"] = [r["code"] for r in body["reasons"]]
        else:
            extra["timings"] = {"acked_ms": round(e2e * 1000, 3)}
        events_log.info("event done", extra=extra)

    def _emit(self, item: WorkItem, verdict: Verdict, signals: dict[str, float], sha: str | None, cached: bool,
              content: dict[str, Any] | None) -> None:
        body = build_scored(item, verdict, self.model_ref, signals, sha, cached)
        self.sink.scored(item, body, content if sha and not cached else None)

    def _emit_reject(self, item: WorkItem, code, message: str, sha: str | None, content: dict[str, Any] | None = None,
                     cached: bool = False) -> None:
        assert item.event is not None
        verdict = self.policy.reject(item.event.policy, code, message)
        self._emit(item, verdict, {}, sha, cached, content)

    def _emit_from_content(self, item: WorkItem, content: dict[str, Any], cached: bool) -> None:
        """Re-judge cached content under this event's own profile and role (the policy is pure)."""
        assert item.event is not None
        signals = content.get("signals", {})
        if content.get("reject"):
            r = content["reject"]
            self._emit_reject(item, r["code"], r["message"], content.get("content_sha256"), content, cached)
            return
        verdict = self.policy.judge(signals, item.event.policy, item.event.role)
        self._emit(item, verdict, signals, content.get("content_sha256"), cached, content)

    def _fail(self, item: WorkItem, stage: str, exc: BaseException) -> None:
        """Unexpected error: retry with backoff, then DLQ. Never blocks the partition."""
        item.attempts += 1
        if item.attempts <= self.settings.processing_retries and not self._halt.is_set():
            metrics.RETRIES.labels(stage).inc()
            log.warning("stage failed, retrying", extra={"stage": stage, "error": repr(exc), "attempt": item.attempts,
                                                         "event_id": item.event.event_id if item.event else None})
            delay = random.uniform(0, 0.1 * 2 ** item.attempts)
            threading.Timer(delay, lambda: self._pool.submit(self._process, item)).start()
            return
        self.sink.dead_letter(item, stage, f"{type(exc).__name__}: {exc}")

    # -- fetch pool: cache -> fetch -> cache -> decode ------------------------------------
    def _process(self, item: WorkItem) -> None:
        if self._halt.is_set():
            return
        ev = item.event
        assert ev is not None
        try:
            if ev.content_sha256:
                hit = self.cache.get(ev.content_sha256)
                if hit is not None:
                    self._emit_from_content(item, hit, cached=True)
                    return
            t0 = time.monotonic()
            try:
                fetched = self.fetcher.fetch(ev.url)
            except FetchError as e:
                metrics.FETCH_SECONDS.labels("error").observe(time.monotonic() - t0)
                log.info("fetch failed", extra={"event_id": ev.event_id, "image_id": ev.image_id, "stage": "fetch", "error": str(e)})
                self._emit_reject(item, e.code, f"image could not be fetched: {e}", None)
                return
            dt = time.monotonic() - t0
            metrics.FETCH_SECONDS.labels("ok").observe(dt)
            item.timings["fetch_ms"] = round(dt * 1000, 3)
            sha = item.sha256 = hashlib.sha256(fetched.data).hexdigest()
            if sha != ev.content_sha256:
                hit = self.cache.get(sha)
                if hit is not None:
                    self._emit_from_content(item, hit, cached=True)
                    return
            if not self.flight.join(sha, item):
                return  # an identical image is being scored; we get its result
            t0 = time.monotonic()
            try:
                d = decode(fetched.data, self.predictor.preprocess, self.predictor.input_size, self.decode_limits)
            except DecodeError as e:
                metrics.DECODE_SECONDS.labels("error").observe(time.monotonic() - t0)
                self._finish_content(item, {"content_sha256": sha, "signals": {}, "reject": {"code": e.code.value, "message": str(e)}})
                return
            dt = time.monotonic() - t0
            metrics.DECODE_SECONDS.labels("ok").observe(dt)
            item.timings["decode_ms"] = round(dt * 1000, 3)
            item.tensor, item.signals = d.tensor, d.signals
            item.enqueued_at = time.monotonic()
            self.batcher.put(item, self._halt)
        except Exception as e:  # a poison event must not kill the thread or block the partition
            if item.sha256:
                for follower in self.flight.finish(item.sha256):
                    self._pool.submit(self._process, follower)
            self._fail(item, "fetch_decode", e)

    def _finish_content(self, leader: WorkItem, content: dict[str, Any]) -> None:
        """Emit the leader's result and serve every parked identical image from it."""
        self._emit_from_content(leader, content, cached=False)
        for follower in self.flight.finish(content["content_sha256"]):
            follower.sha256 = content["content_sha256"]
            self._emit_from_content(follower, content, cached=True)

    # -- inference thread -----------------------------------------------------------------
    def _inference_loop(self) -> None:
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        while not self._halt.is_set():
            batch = self.batcher.next_batch(self._halt)
            if batch:
                self._infer(batch)

    def _infer(self, batch: list[WorkItem]) -> None:
        now = time.monotonic()
        for it in batch:
            q = now - it.enqueued_at
            metrics.QUEUE_SECONDS.observe(q)
            it.timings["queue_ms"] = round(q * 1000, 3)
        try:
            outputs = self._forward(batch)
        except Exception as e:
            if len(batch) == 1:
                self._fail_inference(batch[0], e)
                return
            log.warning("batch failed, isolating items", extra={"error": repr(e), "batch_size": len(batch)})
            for it in batch:  # find the poison item: the rest still get scored
                self._infer([it])
            return
        for i, it in enumerate(batch):
            signals = merge_signals(it.signals, outputs, i)
            content = {"content_sha256": it.sha256, "signals": signals, "model": self.model_ref.model_dump()}
            it.tensor = None
            try:
                self._finish_content(it, content)
            except Exception as e:
                self._fail_inference(it, e)

    def _forward(self, batch: list[WorkItem]) -> dict[str, torch.Tensor]:
        x = torch.stack([it.tensor for it in batch])
        if self.predictor.device.type == "cuda":
            x = x.pin_memory()  # lets the predictor's host-to-device copy run asynchronously
        t0 = time.monotonic()
        out = self.predictor.predict(x)
        dt = time.monotonic() - t0
        metrics.INFERENCE_SECONDS.observe(dt)
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.IMAGES_INFERRED.inc(len(batch))
        for it in batch:
            it.timings["inference_ms"] = round(dt * 1000, 3)
        return out

    def _fail_inference(self, item: WorkItem, e: BaseException) -> None:
        if item.sha256:
            for follower in self.flight.finish(item.sha256):
                self._pool.submit(self._process, follower)
        self._fail(item, "inference", e)
