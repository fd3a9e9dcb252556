"""The chain, written once, top to bottom as the README draws it.

    claimed-hash lookup (opt-in) -> fetch -> lookup by content hash -> single-flight
      -> [decode threads] decode -> [micro-batch] infer -> share with identical images -> judge -> emit

The Kafka loop hands over each consume batch at once: the claimed-hash lookups of the batch
are one Redis round trip (MGET), and the hits (no I/O left: judge and emit) finish on the
loop's thread. Fetch threads run the rest of the chain up to decode; decode threads (as
many as the cores) up to the batcher; the inference thread continues it from the model on.
Timing, metrics, the epoch check and what a failure means live in `steps.base.Chain`,
around every step, not in the steps.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from consumer import metrics
from consumer.batcher import Batcher
from consumer.cache import ResultCache
from consumer.config import Settings
from consumer.decode import DecodeBudget, DecodeLimits
from consumer.events import ModelRef
from consumer.fetch import Fetcher, FetchLimits
from consumer.health import Health
from consumer.offsets import OffsetTracker
from consumer.ordering import Emitter
from consumer.policy import Policy
from consumer.pool import WorkerPool
from consumer.retry import DelayQueue
from consumer.shadow import Candidate, Shadow
from consumer.steps.base import Chain, Failures
from consumer.steps.decode import Decode, DecodeHandOff
from consumer.steps.dedupe import ShareWithFollowers, SingleFlight
from consumer.steps.emit import Emit
from consumer.steps.fetch import Fetch
from consumer.steps.infer import Infer
from consumer.steps.judge import Judge
from consumer.steps.lookup import ClaimedHashLookup, ContentLookup
from consumer.steps.shadow import shadow_steps
from consumer.work import WorkItem


def build_fetcher(s: Settings) -> Fetcher:
    limits = FetchLimits(
        allowed_schemes=tuple(s.allowed_schemes), allow_networks=tuple(s.allow_networks), file_root=s.file_root,
        timeout_s=s.fetch_timeout_s, connect_timeout_s=s.fetch_connect_timeout_s, max_bytes=s.fetch_max_bytes,
        max_redirects=s.fetch_max_redirects, retries=s.fetch_retries, backoff_ms=s.fetch_backoff_ms, user_agent=s.user_agent,
    )
    return Fetcher(limits, on_retry=lambda stage: metrics.RETRIES.labels(stage).inc())


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Pipeline:
    chain: Chain
    fetch_pool: WorkerPool
    decode_pool: WorkerPool
    claimed: ClaimedHashLookup
    infer: Infer
    delayed: DelayQueue
    shadow: Shadow | None = None

    def submit(self, items: list[WorkItem]) -> None:
        """One consume batch: its claimed hashes in one MGET; hits finish here, the rest go to fetch threads."""
        start = self.chain.index(self.claimed.name) + 1 if self.claimed.lookup_many(items) else 0
        for item in items:
            if item.known:
                self.chain.run(item, start)
            else:
                self.fetch_pool.submit(item, start)

    def start(self) -> None:
        self.fetch_pool.start()
        self.decode_pool.start()
        self.infer.thread.start()
        self.delayed.thread.start()
        if self.shadow is not None:
            self.shadow.thread.start()

    def stop(self) -> None:
        self.delayed.stop()
        self.infer.thread.join(timeout=5)
        if self.shadow is not None:
            self.shadow.thread.join(timeout=5)


def build_pipeline(s: Settings, predictor: Any, policy: Policy, cache: ResultCache, emitter: Emitter,
                   tracker: OffsetTracker, health: Health, halt: threading.Event,
                   candidate: Candidate | None = None) -> Pipeline:
    def is_current(item: WorkItem) -> bool:
        return tracker.is_current(item.source.topic, item.source.partition, item.source.epoch)

    def park(item: WorkItem, waiting: bool) -> None:
        src = item.source
        tracker.set_waiting(src.topic, src.partition, src.offset, src.epoch, waiting)

    def from_start(item: WorkItem) -> None:
        park(item, False)
        pool.submit(item)

    flight = SingleFlight()
    claimed = ClaimedHashLookup(cache, trusted=s.trust_claimed_sha256)
    delayed = DelayQueue(s.max_delayed, from_start, lambda: health.beat("retry"))
    failures = Failures(s.retry_delays_s, s.processing_retries, delayed, from_start, emitter.dead_letter, park,
                        on_abandon=lambda item: [from_start(f) for f in flight.release(item)])
    batcher: Batcher[WorkItem] = Batcher(s.max_batch_size, s.max_batch_delay_ms, s.decode_queue_size)
    metrics.INFERENCE_QUEUE.set_function(batcher.qsize)
    infer = Infer(predictor, batcher, health, halt, done=lambda item: chain.resume_after("infer", item),
                  failed=lambda item, e: failures.handle(item, "inference", e))
    # A shadow (consumer/shadow.py) only looks on: a tap keeps its input, an offer after judge hands it over.
    shadowing = shadow_steps(s, predictor, candidate, health, halt)
    decode_pool = WorkerPool("decode", s.decode_threads or usable_cores(), lambda item, start: chain.run(item, start),
                             health, halt, capacity=s.fetch_concurrency)
    chain = Chain([
        claimed,
        Fetch(build_fetcher(s)),
        ContentLookup(cache),
        flight,
        *shadowing.tap,
        DecodeHandOff(decode_pool, lambda: chain.index("decode")),
        Decode(DecodeLimits(max_pixels=s.max_pixels, allowed_formats=tuple(s.allowed_formats)),
               DecodeBudget(s.decode_memory_mb << 20), predictor.preprocess, predictor.input_size,
               predictor.needs_full_resolution),
        infer,
        ShareWithFollowers(flight, continue_at_judge=lambda item: chain.run(item, chain.index("judge"))),
        Judge(policy),
        *shadowing.offer,
        Emit(ModelRef(name=predictor.name, version=predictor.version), emitter),
    ], failures, is_current)
    pool = WorkerPool("fetch", s.fetch_concurrency, chain.run, health, halt)
    health.register("inference", infer.thread)
    health.register("retry", delayed.thread)
    return Pipeline(chain, pool, decode_pool, claimed, infer, delayed, shadowing.shadow)
