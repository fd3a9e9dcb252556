"""Build the typed `image_scored` event and hand it to the ordered sink."""

from __future__ import annotations

from consumer.events import ModelRef
from consumer.ordering import Emitter
from consumer.steps.base import HANDED_OFF, Flow
from consumer.work import WorkItem, build_scored


class Emit:
    name = "emit"
    produces_content = False

    def __init__(self, model_ref: ModelRef, emitter: Emitter):
        self.model_ref = model_ref
        self.emitter = emitter

    def __call__(self, item: WorkItem) -> Flow:
        assert item.verdict is not None
        signals = item.content.signals if item.content is not None and item.content.reject is None else {}
        self.emitter.scored(item, build_scored(item, item.verdict, self.model_ref, signals))
        return HANDED_OFF
