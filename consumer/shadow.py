"""Shadow models: a candidate weights file and/or policy file judged beside the default on a
sampled share of live traffic, without touching what listing services get.

Why this shape:
- The default verdict is emitted exactly as without a shadow. The chain only *offers* a sample
  (`Shadow.offer`, never blocking): when the shadow queue is full the sample is dropped and
  counted. Offsets and commits never wait for the shadow.
- The candidate model is its own instance (`model.load`) on its own thread with its own batches.
  It reuses the default's decoded input when the input contract is the same (size and views);
  otherwise the sample keeps the fetched bytes and the shadow thread decodes for itself, so a
  full-resolution candidate (a detail view) costs the main chain nothing.
- A candidate policy alone re-judges the default model's outputs: no second model, no input kept.
- Sampling is by content hash (`sampled`): a rerun, or another replica, shadows the same images.
- Candidate verdicts go only to `IMAGEGATE_SHADOW_TOPIC` (config refuses the output topic), as
  image_scored-shaped records marked by a `shadow` field (which also carries the default verdict,
  so `imagegate shadow report` needs nothing else) and an `imagegate_shadow` header (consumer/shadow_output.py).
- The worker and the scoring API run the same Shadow (consumer/steps/shadow.py `shadow_steps` builds it
  for both); `via` in each record says which one judged it.
- Liveness: the shadow thread registers with `consumer.health` like every other thread, so its
  death or stall fails `/healthz` and the process restarts. A shadow that silently stopped would
  report agreement over a sample nobody can see is missing; a restart is cheap and the listing
  traffic resumes from committed offsets. Its waits are bounded (a batch is at most
  `shadow_max_batch` images), so a live shadow beats at least every few seconds.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from consumer import metrics
from consumer.batcher import Batcher
from consumer.config import Settings
from consumer.decode import DecodeBudget, DecodeBusy, DecodeError, DecodeLimits, decode
from consumer.events import ModelRef
from consumer.health import Health
from consumer.policy import Policy, Verdict
from consumer.shadow_output import ShadowOutput, ShadowSample
from consumer.work import WorkItem, merge_signals

log = logging.getLogger("imagegate.shadow")

_SALT = b"imagegate-shadow\x00"
SEEN_MAX = 4096  # candidate results kept by content hash, for later cache hits on the same bytes
BATCH_DELAY_MS = 50.0


def sampled(key: str | None, share: float) -> bool:
    """Deterministic: the same key (a content hash) is in or out of the sample on every run and replica."""
    if not key or share <= 0:
        return False
    x = int.from_bytes(hashlib.sha256(_SALT + key.encode()).digest()[:8], "big") / 2.0 ** 64
    return x < share


@dataclass(frozen=True)
class Candidate:
    """What the shadow judges with: a model (None: the default's outputs) and a policy."""

    predictor: Any | None
    policy: Policy


def needs_own_decode(default: Any, candidate: Any) -> bool:
    """The default's model input cannot feed the candidate (another size or views, or native pixels)."""
    def contract(p: Any) -> tuple:
        return p.input_size, tuple(getattr(p, "views", ("global",)))

    return contract(default) != contract(candidate) or (
        getattr(candidate, "needs_full_resolution", False) and not getattr(default, "needs_full_resolution", False))


class Shadow:
    """Takes samples from the chain without blocking it and judges them with the candidate on its own thread."""

    def __init__(self, s: Settings, default: Any, candidate: Candidate, health: Health, halt: threading.Event,
                 via: str = "worker"):
        self.share = s.shadow_sample
        self.candidate = candidate
        self.default_ref = ModelRef(name=default.name, version=default.version)
        self.default_heads = set(getattr(default, "heads", ()))
        p = candidate.predictor
        self.model_ref = ModelRef(name=p.name, version=p.version) if p is not None else self.default_ref
        self.own_decode = p is not None and needs_own_decode(default, p)
        self.health = health
        self.halt = halt
        self.batcher: Batcher[ShadowSample] = Batcher(s.shadow_max_batch, BATCH_DELAY_MS, s.shadow_queue)
        metrics.SHADOW_QUEUE.set_function(self.batcher.qsize)
        self.limits = DecodeLimits(max_pixels=s.max_pixels, allowed_formats=tuple(s.allowed_formats))
        self.budget = DecodeBudget(min(s.decode_memory_mb, 512) << 20)
        self._seen: OrderedDict[str, dict[str, float]] = OrderedDict()
        self.output = ShadowOutput(s, self.model_ref, via)
        self.thread = threading.Thread(target=self._run, name="shadow", daemon=True)

    # -- on the chain's threads: never block, never raise ------------------------------------------
    def wants_input(self, item: WorkItem) -> bool:
        return self.candidate.predictor is not None and sampled(item.sha256, self.share)

    def offer(self, item: WorkItem) -> None:
        try:
            ev = item.event
            if ev is None or item.verdict is None or not sampled(item.sha256 or ev.event_id, self.share):
                return
            content = item.content
            rejection = item.rejection or (content.reject if content is not None else None)
            sample = ShadowSample(ev, item.sha256, item.verified, item.cached, item.verdict, self.default_ref,
                                  dict(content.signals) if content is not None and rejection is None else {},
                                  item.measured, rejection, item.shadow)
            item.shadow = None
            if not self.batcher.offer(sample):
                metrics.SHADOW_EVENTS.labels("dropped").inc()
        except Exception:  # noqa: BLE001 (the shadow never fails the listing traffic)
            log.exception("shadow offer failed")
            metrics.SHADOW_EVENTS.labels("error").inc()

    # -- the shadow thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self.halt.is_set():
            self.health.beat("shadow")
            batch: list[ShadowSample] = []
            try:
                self.output.poll()
                batch = self.batcher.next_batch(self.halt)
                if batch:
                    self._process(batch)
            except Exception:  # noqa: BLE001 (counted; the thread lives on)
                log.exception("shadow batch failed", extra={"batch_size": len(batch)})
                metrics.SHADOW_EVENTS.labels("error").inc(len(batch))
        self.output.flush(2.0)

    def _process(self, batch: list[ShadowSample]) -> None:
        done: list[tuple[ShadowSample, Verdict, dict[str, float], float | None]] = []
        to_model: list[tuple[ShadowSample, Any, dict[str, float] | None]] = []
        policy = self.candidate.policy
        for smp in batch:
            ev = smp.event
            if smp.rejection is not None:
                done.append((smp, policy.reject(ev.policy, smp.rejection.code, smp.rejection.message, role=ev.role),
                             {}, None))
            elif self.candidate.predictor is None:
                done.append((smp, policy.judge(smp.signals, ev.policy, ev.role), smp.signals, None))
            elif smp.sha256 is not None and smp.sha256 in self._seen:
                signals = self._seen[smp.sha256]
                done.append((smp, policy.judge(signals, ev.policy, ev.role), signals, None))
            else:
                prepared = self._input(smp)
                if prepared is None:
                    metrics.SHADOW_EVENTS.labels("skipped").inc()
                elif isinstance(prepared, Verdict):
                    done.append((smp, prepared, {}, None))
                else:
                    to_model.append((smp, *prepared))
        if to_model:
            done += self._score(to_model)
        for smp, verdict, signals, dt in done:
            self.output.record(smp, verdict, signals, dt)

    def _input(self, smp: ShadowSample) -> tuple[Any, dict[str, float] | None] | Verdict | None:
        """The candidate's model input and measurements; a Verdict if its own decode rejects the file."""
        inp = smp.input
        if inp is None:
            return None  # a cache hit or a single-flight follower: the bytes were never here
        if not inp.own_decode:
            if inp.pixels is None:
                return None
            measured = smp.measured or {k: v for k, v in smp.signals.items() if k not in self.default_heads}
            return inp.pixels, measured
        if inp.data is None:
            return None
        p = self.candidate.predictor
        try:
            d = decode(inp.data, p.preprocess, p.input_size, self.limits, self.budget, p.needs_full_resolution)
        except DecodeError as e:
            return self.candidate.policy.reject(smp.event.policy, e.code, str(e), role=smp.event.role)
        except DecodeBusy:
            return None
        return d.tensor, d.signals

    def _score(self, todo: list[tuple[ShadowSample, Any, dict[str, float] | None]]) -> list:
        from consumer.steps.infer import stack

        p = self.candidate.predictor
        t0 = time.monotonic()
        try:
            out = p.predict(stack([x for _, x, _ in todo], p))
        except Exception:  # noqa: BLE001
            log.exception("candidate model failed a shadow batch", extra={"batch_size": len(todo)})
            metrics.SHADOW_EVENTS.labels("error").inc(len(todo))
            return []
        dt = time.monotonic() - t0
        metrics.SHADOW_INFERENCE_SECONDS.observe(dt)
        metrics.SHADOW_BATCH_SIZE.observe(len(todo))
        res = []
        for i, (smp, _, measured) in enumerate(todo):
            signals = merge_signals(measured, out, i)
            if smp.sha256 is not None:
                self._seen[smp.sha256] = signals
                while len(self._seen) > SEEN_MAX:
                    self._seen.popitem(last=False)
            res.append((smp, self.candidate.policy.judge(signals, smp.event.policy, smp.event.role), signals, dt))
        return res
