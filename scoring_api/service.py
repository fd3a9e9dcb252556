"""Admission, the chain's threads, and the futures the event loop awaits.

A request takes one of `IMAGEGATE_API_CONCURRENCY` slots before its body is read, or is
answered 429 at once: nothing queues without bound. The slot is held until the request's
work has finished, not until its answer was sent: a request past its deadline is answered
504, but its fetch, decode and batch still finish (each bounded by its own limit) and its
result is cached, so a retry is cheap, and the bound on work in this process stays true.

The chain runs on a pool of as many threads as there are slots (so a submitted request never
waits for a thread), up to the batcher; the one inference thread owns the model and continues
the chain from there (consumer/steps/infer.py), exactly as in the worker.

With `IMAGEGATE_SHADOW_*` the worker's Shadow (consumer/shadow.py) runs here too, built by the
same `shadow_steps`, its tap and offer at the same places in the chain: the answer is the
default's verdict and never waits for it (a full shadow queue drops the sample, counted).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import itertools
import logging
import threading
import time
from typing import Any

from consumer import metrics as worker_metrics
from consumer.batcher import Batcher
from consumer.cache import ResultCache
from consumer.config import Settings
from consumer.decode import DecodeBudget, DecodeLimits
from consumer.events import ModelRef
from consumer.health import Health
from consumer.pipeline import build_fetcher
from consumer.policy import Policy
from consumer.shadow import Candidate
from consumer.steps.base import Chain
from consumer.steps.decode import Decode
from consumer.steps.dedupe import ShareWithFollowers, SingleFlight
from consumer.steps.fetch import Fetch
from consumer.steps.infer import Infer
from consumer.steps.judge import Judge
from consumer.steps.lookup import ContentLookup
from consumer.steps.shadow import shadow_steps
from consumer.work import ContentResult
from scoring_api import metrics
from scoring_api.chain import ApiItem, Reply, ReplyWithFailure, ScoringFailed, resolve
from scoring_api.config import ApiSettings

log = logging.getLogger("imagegate.api")


class Slot:
    """One admitted request's share of the concurrency bound; released once, by whoever finishes first."""

    def __init__(self, service: "ScoringService", key: int):
        self._service = service
        self._key = key
        self._released = False
        self._lock = threading.Lock()

    def release(self, *_: Any) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._service._release(self._key)


class ScoringService:
    def __init__(self, s: Settings, api: ApiSettings, predictor: Any, policy: Policy, cache: ResultCache | None,
                 candidate: Candidate | None = None):
        self.settings, self.api, self.policy, self.cache = s, api, policy, cache
        self.model_ref = ModelRef(name=predictor.name, version=predictor.version)
        self.max_body_bytes = api.max_body_bytes or s.fetch_max_bytes
        self.health = Health(s.stall_after_s, s.in_flight_max_age_s)
        self.health.model_loaded = True
        self.health.oldest_in_flight = self._oldest_admitted_s  # a request whose work never ends fails /healthz
        self.halt = threading.Event()
        self._slots = threading.BoundedSemaphore(api.concurrency)
        self._admitted: dict[int, float] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        metrics.CONCURRENCY.set(api.concurrency)
        self.pool = concurrent.futures.ThreadPoolExecutor(api.concurrency, thread_name_prefix="score")

        flight = SingleFlight()
        failures = ReplyWithFailure(flight)
        batcher: Batcher[ApiItem] = Batcher(s.max_batch_size, s.max_batch_delay_ms, s.decode_queue_size)
        worker_metrics.INFERENCE_QUEUE.set_function(batcher.qsize)
        self.infer = Infer(predictor, batcher, self.health, self.halt,
                           done=lambda item: chain.resume_after("infer", item),
                           failed=lambda item, e: failures.handle(item, "inference", e))
        shadowing = shadow_steps(s, predictor, candidate, self.health, self.halt, via="api")
        self.shadow = shadowing.shadow
        steps: list[Any] = [Fetch(build_fetcher(s))]
        if cache is not None:
            steps.append(ContentLookup(cache))
        steps += [
            flight,
            *shadowing.tap,
            Decode(DecodeLimits(max_pixels=s.max_pixels, allowed_formats=tuple(s.allowed_formats)),
                   DecodeBudget(s.decode_memory_mb << 20), predictor.preprocess, predictor.input_size,
                   predictor.needs_full_resolution),
            self.infer,
            ShareWithFollowers(flight, continue_at_judge=lambda item: chain.run(item, chain.index("judge"))),
            Judge(policy),
            *shadowing.offer,
            Reply(self.model_ref),
        ]
        # Nothing is ever stale here (no partitions, no epochs): is_current is always true.
        chain = self.chain = Chain(steps, failures, is_current=lambda item: True)  # type: ignore[arg-type]
        self._upload_entry = chain.index("fetch") + 1

    # -- lifetime ------------------------------------------------------------------------------
    def start(self) -> None:
        self.infer.thread.start()
        self.health.register("inference", self.infer.thread)
        if self.shadow is not None:
            self.shadow.thread.start()

    def stop(self) -> None:
        self.halt.set()
        for thread in (self.infer.thread, self.shadow.thread if self.shadow is not None else None):
            if thread is not None and thread.ident is not None:  # started
                thread.join(timeout=5)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def ready(self) -> tuple[bool, dict]:
        alive = self.infer.thread.is_alive()
        detail = {"model_loaded": self.health.model_loaded, "inference_thread_alive": alive,
                  "stopping": self.halt.is_set(), "model": self.model_ref.model_dump(), "policy_version": self.policy.version}
        return self.health.model_loaded and alive and not self.halt.is_set() and not self.health.fatal, detail

    # -- admission -----------------------------------------------------------------------------
    def admit(self) -> Slot | None:
        """A slot, or None when all are taken (the caller answers 429). Never blocks."""
        if not self._slots.acquire(blocking=False):
            metrics.THROTTLED.inc()
            return None
        key = next(self._ids)
        with self._lock:
            self._admitted[key] = time.monotonic()
        metrics.IN_FLIGHT.inc()
        return Slot(self, key)

    def _release(self, key: int) -> None:
        with self._lock:
            self._admitted.pop(key, None)
        metrics.IN_FLIGHT.dec()
        self._slots.release()

    def _oldest_admitted_s(self) -> float:
        with self._lock:
            first = min(self._admitted.values(), default=None)
        return 0.0 if first is None else time.monotonic() - first

    # -- work ----------------------------------------------------------------------------------
    def submit(self, item: ApiItem, slot: Slot) -> concurrent.futures.Future:
        """Run the chain for `item` (from the fetch step when it carries no bytes); the slot is
        released when its future resolves."""
        item.reply.add_done_callback(slot.release)
        start = 0 if item.data is None else self._upload_entry
        try:
            self.pool.submit(self._run, item, start)
        except RuntimeError as e:  # the pool is shut down: we are stopping
            resolve(item.reply, error=ScoringFailed("admission", e))
        return item.reply

    def _run(self, item: ApiItem, start: int) -> None:
        try:
            if item.data is not None:  # an upload: what the fetch step does for a URL, here (off the event loop)
                item.sha256, item.verified = hashlib.sha256(item.data).hexdigest(), True
            self.chain.run(item, start)
        except Exception as e:  # noqa: BLE001 (the chain sorts step failures; this is a bug around it)
            log.exception("chain error outside a step")
            resolve(item.reply, error=ScoringFailed("chain", e))

    def store(self, content: ContentResult) -> None:
        """Cache a newly scored result (called after the answer went out; Redis trouble only skips it)."""
        if self.cache is not None:
            self.cache.put_content(content)
