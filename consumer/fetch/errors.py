"""The two ways a fetch fails, and whose problem each is (`transient`: ours, retried)."""

from __future__ import annotations

from consumer.events import ReasonCode


class FetchError(Exception):
    """The image could not be fetched. `code` is the reason code for the verdict."""

    def __init__(self, message: str, *, transient: bool = False, code: ReasonCode = ReasonCode.FETCH_FAILED):
        super().__init__(message)
        self.transient = transient
        self.code = code


class BlockedURL(FetchError):
    """Refused by policy (scheme, address, file root). Never retried."""
