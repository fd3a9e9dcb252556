"""Cache lookups: by the hash of the bytes we fetched, or (opt-in) by the event's claimed hash."""

from __future__ import annotations

from consumer.cache import ResultCache
from consumer.steps.base import NEXT, Flow
from consumer.work import ContentResult, WorkItem


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
        self._serve(item, claimed, self.cache.get(claimed))
        return NEXT

    def lookup_many(self, items: list[WorkItem]) -> bool:
        """This step for a whole consume batch: one MGET instead of one GET per event.

        True when the batch was looked up (the chain then starts after this step)."""
        if not self.trusted:
            return False
        claimed = [(it, it.event.content_sha256) for it in items if it.event is not None and it.event.content_sha256]
        found = self.cache.get_many([h for _, h in claimed])
        for (it, h), hit in zip(claimed, found):
            self._serve(it, h, hit)
        return True

    @staticmethod
    def _serve(item: WorkItem, claimed: str, hit: ContentResult | None) -> None:
        if hit is not None:
            item.content, item.sha256, item.verified, item.cached = hit, claimed, False, True


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
