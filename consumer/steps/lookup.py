"""Cache lookups: by the hash of the bytes we fetched, or (opt-in) by the event's claimed hash."""

from __future__ import annotations

from consumer.cache import ResultCache
from consumer.steps.base import NEXT, Flow
from consumer.work import WorkItem


class ClaimedHashLookup:
    """Skip the fetch when the event's `content_sha256` is cached.

    Off by default: whoever can set that field (or serve a mutable URL) could claim the
    hash of any image scored in the last 30 days and get its verdict. Only platforms whose
    upload service computes the hash and serves immutable, content-addressed URLs turn it on
    (`IMAGEGATE_TRUST_CLAIMED_SHA256`); results served this way say `content_verified: false`.
    """

    name = "claimed_lookup"
    produces_content = True

    def __init__(self, cache: ResultCache, trusted: bool):
        self.cache = cache
        self.trusted = trusted

    def __call__(self, item: WorkItem) -> Flow:
        claimed = item.event.content_sha256 if item.event else None
        if not self.trusted or not claimed:
            return NEXT
        hit = self.cache.get(claimed)
        if hit is not None:
            item.content, item.sha256, item.verified, item.cached = hit, claimed, False, True
        return NEXT


class ContentLookup:
    """Identical bytes scored before (by any event, any profile) are re-judged, not re-scored."""

    name = "content_lookup"
    produces_content = True

    def __init__(self, cache: ResultCache):
        self.cache = cache

    def __call__(self, item: WorkItem) -> Flow:
        assert item.sha256 is not None
        hit = self.cache.get(item.sha256)
        if hit is not None:
            item.content, item.cached = hit, True
            item.data = None
        return NEXT
