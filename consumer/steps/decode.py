"""Decode the bytes into the model's input plus cheap measured signals (consumer/decode.py).

Decoding runs on its own threads, as many as the cores (`IMAGEGATE_DECODE_THREADS`), not on
the fetch thread that got the bytes: with one decode per fetch thread (16) all decoding at
once, decodes took the cores from the model's threads and an image's latency at half load
was seconds. `DecodeHandOff` queues the item for those threads (a bounded queue: a fetch
thread waits while it is full, so fetched bytes never pile up); they continue the chain at
`Decode`.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from consumer.decode import DecodeBudget, DecodeBusy, DecodeError, DecodeLimits, decode
from consumer.retry import Transient
from consumer.steps.base import HANDED_OFF, NEXT, Flow
from consumer.work import ContentResult, Rejection, WorkItem


class _Pool(Protocol):
    def submit(self, item: WorkItem, start: int = 0) -> bool: ...


class DecodeHandOff:
    """Fetch thread -> a decode thread, which runs the chain from `Decode` on."""

    name = "decode_queue"
    produces_content = True  # a cache hit or a seller-side rejection never queues for decode

    def __init__(self, pool: _Pool, decode_index: Callable[[], int]):
        self.pool = pool
        self.decode_index = decode_index  # the chain's index of `Decode` (known once the chain exists)

    def __call__(self, item: WorkItem) -> Flow:
        if not self.pool.submit(item, self.decode_index()):  # blocks while the decode threads are behind
            raise Transient("worker is stopping", "decode")
        return HANDED_OFF


class Decode:
    name = "decode"
    produces_content = True

    def __init__(self, limits: DecodeLimits, budget: DecodeBudget, preprocess: Callable[[Any], Any], input_size: int,
                 full_resolution: bool = False):
        self.limits = limits
        self.budget = budget
        self.preprocess = preprocess
        self.input_size = input_size
        self.full_resolution = full_resolution  # the predictor's needs_full_resolution (a detail view)

    def __call__(self, item: WorkItem) -> Flow:
        assert item.data is not None and item.sha256 is not None
        data, item.data = item.data, None  # the bytes are not needed past this point
        try:
            d = decode(data, self.preprocess, self.input_size, self.limits, self.budget, self.full_resolution)
        except DecodeError as e:  # the seller's file: a reject, cached by content like any result
            item.content = ContentResult(item.sha256, {}, None, Rejection(e.code, str(e)))
            item.store_content = True
            return NEXT
        except DecodeBusy as e:
            raise Transient(str(e), "decode") from None
        item.pixels, item.measured = d.tensor, d.signals
        return NEXT
