"""The worker's chain of steps, ending in an HTTP reply instead of a Kafka event.

    fetch (URL requests only) -> lookup by content hash -> single-flight -> decode
      -> [micro-batch] infer -> share with identical images -> judge -> reply

The steps are consumer/steps' own objects, built as consumer/pipeline.py builds them, so
a photo gets the same decode, model input, batch, signals, policy and cache key whether it
arrives on Kafka or over HTTP. What differs, and why:

- Uploads enter after the fetch step (they are the bytes); URL requests start at it.
- No claimed-hash lookup: a caller sends bytes or a URL, never a hash to trust.
- `Reply` ends the chain: it resolves the request's future with the `image_scored` event.
- Failures are not retried later (`ReplyWithFailure`): a caller is waiting, so the failure
  resolves the future, sorted as consumer/retry.py sorts it (ours, transient or not), and
  the HTTP layer picks a 5xx. Seller-side problems are verdicts, as in the worker (422).
- The cache write happens after the answer is sent (app.py), off the inference thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
from dataclasses import dataclass, field
from typing import Any

from consumer.events import ImageScored, ModelRef
from consumer.retry import Transient
from consumer.steps.base import HANDED_OFF, Flow
from consumer.steps.dedupe import SingleFlight
from consumer.work import ContentResult, Source, WorkItem, build_scored

log = logging.getLogger("imagegate.api")

API_SOURCE = Source(topic="api", partition=0, offset=0, epoch=0, key=None, value=None)


@dataclass(frozen=True)
class Scored:
    """What a request's future resolves to when the chain reached a verdict."""

    event: ImageScored
    seller_problem: bool  # rejected before scoring (fetch, decode): the seller's file or URL, a 422
    new_content: ContentResult | None  # scored now, not from the cache: written to it after answering


class ScoringFailed(Exception):
    """Our trouble, never the seller's: the HTTP layer answers 5xx."""

    def __init__(self, stage: str, cause: BaseException):
        super().__init__(f"{stage}: {cause}")
        self.stage = stage
        self.cause = cause
        self.transient = isinstance(cause, Transient)


@dataclass(eq=False)
class ApiItem(WorkItem):
    """A request on its way through the chain; `reply` is what the event loop awaits."""

    reply: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


def resolve(fut: concurrent.futures.Future, result: Any = None, error: BaseException | None = None) -> None:
    """Set a reply once; a second outcome for the same request (cannot happen by design) is logged, not raised."""
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
    except concurrent.futures.InvalidStateError:
        log.error("a request was answered twice; the second outcome is dropped",
                  extra={"outcome": repr(error) if error is not None else "result"})


class Reply:
    """The chain's last step: the `image_scored` event the worker would emit, handed to the caller."""

    name = "reply"
    produces_content = False

    def __init__(self, model_ref: ModelRef):
        self.model_ref = model_ref

    def __call__(self, item: WorkItem) -> Flow:
        assert isinstance(item, ApiItem) and item.verdict is not None
        content = item.content
        signals = content.signals if content is not None and content.reject is None else {}
        scored = build_scored(item, item.verdict, self.model_ref, signals)
        seller = item.rejection is not None or (content is not None and content.reject is not None)
        new = content if item.store_content and item.verified and content is not None else None
        resolve(item.reply, Scored(scored, seller, new))
        return HANDED_OFF


class ReplyWithFailure:
    """What the chain does with a failure here (in the worker: consumer/steps/base.Failures).

    Same interface (`handle`, `on_abandon`), no delayed retry: the request's future gets the
    failure. Identical images parked behind a failed single-flight leader get the same
    failure (same bytes, same moment); their callers may retry.
    """

    def __init__(self, flight: SingleFlight):
        self.flight = flight

    def on_abandon(self, item: WorkItem) -> None:
        for follower in self.flight.release(item):
            self._fail(follower, "single_flight", RuntimeError("an identical image scored at the same time failed"))

    def handle(self, item: WorkItem, step: str, exc: BaseException) -> None:
        followers = self.flight.release(item)
        level = logging.WARNING if isinstance(exc, Transient) else logging.ERROR
        log.log(level, "scoring failed", extra={"stage": step, "error": repr(exc), "followers": len(followers)})
        self._fail(item, step, exc)
        for f in followers:
            self._fail(f, step, exc)

    @staticmethod
    def _fail(item: WorkItem, step: str, exc: BaseException) -> None:
        assert isinstance(item, ApiItem)
        resolve(item.reply, error=ScoringFailed(step, exc))
