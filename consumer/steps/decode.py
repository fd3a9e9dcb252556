"""Decode the bytes into the model's input plus cheap measured signals (consumer/decode.py)."""

from __future__ import annotations

from typing import Any, Callable

from consumer.decode import DecodeBudget, DecodeBusy, DecodeError, DecodeLimits, decode
from consumer.retry import Transient
from consumer.steps.base import NEXT, Flow
from consumer.work import ContentResult, Rejection, WorkItem


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
