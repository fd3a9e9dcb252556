"""Micro-batch decoded images and run the model on one thread that owns it.

Dynamic batching (consumer/batcher.py): when the model is idle what is waiting leaves at
once (`max_batch_delay_ms` 0, the default), so a lone image never waits for company. A batch
is at most what the model runs in one forward (`Predictor.chunk`: 4 on CPU, where throughput
is flat beyond a few images) and at most `max_batch_size`: results leave after every forward
instead of after a batch of 32 (about a second on 2 cores), and images that arrived while the
model ran join the next forward. A failing batch is split so one poison image cannot sink the
others. Whose failure is it? If the other images of the batch score, the image is poison
(unexpected: quick retries, then DLQ). If every image fails (a sticky device error), it is
ours and transient: each goes to the delayed-retry path and `/healthz` fails after a few
such batches, so the orchestrator restarts the process on a healthy device. An image that
fails alone (at low load most forwards hold one image) has no batch to compare with: the last
image that scored (the canary) runs again; only if it still scores is the image poison. With
no image scored yet nothing shows the model works, so the failure is ours.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from consumer import metrics
from consumer.batcher import Batcher
from consumer.events import ModelRef
from consumer.health import Health
from consumer.retry import Transient
from consumer.steps.base import HANDED_OFF, Flow
from consumer.work import ContentResult, WorkItem, merge_signals

log = logging.getLogger("imagegate.inference")


class Infer:
    name = "infer"
    produces_content = True

    def __init__(self, predictor: Any, batcher: Batcher[WorkItem], health: Health, halt: threading.Event,
                 done: Callable[[WorkItem], None], failed: Callable[[WorkItem, BaseException], None]):
        self.predictor = predictor
        self.model_ref = ModelRef(name=predictor.name, version=predictor.version)
        self.batcher = batcher
        self.health = health
        self.halt = halt
        self._done = done  # continue the chain after this step
        self._failed = failed  # the chain's failure handling
        # One forward's worth per batch (None: no chunking, e.g. CUDA; max_batch_size then bounds it).
        self.forward_size: int | None = getattr(predictor, "chunk", None)
        self._canary: Any = None  # model input of the last image that scored (see _model_works)
        self.thread = threading.Thread(target=self._run, name="inference", daemon=True)

    # -- on the fetch threads: hand the item to the batcher (blocks while the model is behind) --
    def __call__(self, item: WorkItem) -> Flow:
        item.enqueued_at = time.monotonic()
        if not self.batcher.put(item, self.halt):
            raise Transient("worker is stopping", "inference")
        return HANDED_OFF

    # -- the inference thread -----------------------------------------------------------
    def _run(self) -> None:
        while not self.halt.is_set():
            self.health.beat("inference")
            try:
                batch = self.batcher.next_batch(self.halt, limit=self.forward_size)
                if batch:
                    self._score(batch)
            except Exception:  # never let the thread die: the health check would restart us
                log.exception("inference loop error")

    def _score(self, batch: list[WorkItem]) -> None:
        now = time.monotonic()
        for it in batch:
            q = now - it.enqueued_at
            metrics.QUEUE_SECONDS.observe(q)
            it.timings["queue_ms"] = round(q * 1000, 3)
        try:
            outputs = self._forward(batch)
        except Exception as e:
            if len(batch) > 1:
                log.warning("batch failed, isolating items", extra={"error": repr(e), "batch_size": len(batch)})
                self._isolate(batch)
            elif self.health.device_failures > 0 or not self._model_works():
                self._device_failed(batch, e)
            else:
                self._failed(batch[0], e)  # the model works for other images: this one is poison
            return
        self.health.device_failures = 0
        self._canary = batch[0].pixels
        for i, it in enumerate(batch):
            it.content = ContentResult(it.sha256 or "", merge_signals(it.measured, outputs, i), self.model_ref)
            it.store_content = True
            it.release_pixels()
            self._done(it)

    def _isolate(self, batch: list[WorkItem]) -> None:
        failed: list[tuple[WorkItem, BaseException]] = []
        for it in batch:
            try:
                out = self._forward([it])
            except Exception as e:
                failed.append((it, e))
                continue
            self._canary = it.pixels
            it.content = ContentResult(it.sha256 or "", merge_signals(it.measured, out, 0), self.model_ref)
            it.store_content = True
            it.release_pixels()
            self._done(it)
        if len(failed) == len(batch):
            self._device_failed([it for it, _ in failed], failed[0][1])
            return
        self.health.device_failures = 0
        for it, e in failed:
            self._failed(it, e)

    def _model_works(self) -> bool:
        """One image failed alone: does the model still score the last image that scored?"""
        if self._canary is None:
            return False
        try:
            self.predictor.predict(stack([self._canary], self.predictor))
        except Exception:  # noqa: BLE001 (the device, not the image)
            return False
        return True

    def _device_failed(self, items: list[WorkItem], e: BaseException) -> None:
        self.health.device_failures += 1
        log.error("model failed every image of the batch", extra={"error": repr(e), "batch_size": len(items),
                                                                 "consecutive": self.health.device_failures})
        for it in items:
            self._failed(it, Transient(f"model failed every image of its batch: {type(e).__name__}: {e}", "inference"))

    def _forward(self, batch: list[WorkItem]) -> dict[str, Any]:
        x = stack([it.pixels for it in batch], self.predictor)
        t0 = time.monotonic()
        out = self.predictor.predict(x)
        dt = time.monotonic() - t0
        metrics.INFERENCE_SECONDS.observe(dt)
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.IMAGES_INFERRED.inc(len(batch))
        for it in batch:
            it.timings["inference_ms"] = round(dt * 1000, 3)
        return out


def stack(rows: list[Any], predictor: Any) -> Any:
    """One batch array in the predictor's input type (numpy, or torch with pinned memory on CUDA)."""
    if isinstance(rows[0], np.ndarray):
        return np.stack(rows)
    import torch

    x = torch.stack(rows)
    if str(getattr(predictor, "device", "cpu")).startswith("cuda"):
        x = x.pin_memory()  # lets the predictor's host-to-device copy run asynchronously
    return x
