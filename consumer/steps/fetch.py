"""Fetch the image bytes (SSRF-guarded, bounded; consumer/fetch/) and hash what arrived."""

from __future__ import annotations

import hashlib

from consumer.fetch import Fetcher, FetchError
from consumer.retry import Transient
from consumer.steps.base import NEXT, Flow
from consumer.work import Rejection, WorkItem


class Fetch:
    name = "fetch"
    produces_content = True

    def __init__(self, fetcher: Fetcher):
        self.fetcher = fetcher

    def __call__(self, item: WorkItem) -> Flow:
        assert item.event is not None
        try:
            fetched = self.fetcher.fetch(item.event.url)
        except FetchError as e:
            if e.transient:  # ours: DNS, connection, timeout, 5xx, 429 -> delayed retry, never a reject
                raise Transient(f"fetch failed: {e}", "fetch") from None
            item.rejection = Rejection(e.code, f"image could not be fetched: {e}")
            return NEXT
        item.data = fetched.data
        item.sha256 = hashlib.sha256(fetched.data).hexdigest()
        item.verified = True
        return NEXT
