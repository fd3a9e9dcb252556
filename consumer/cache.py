"""Redis result cache. Redis is a cache, never a dependency of correctness.

Keys (DESIGN: Cache):
  imagegate:v{model_version}:{policy_version}:sha256:{sha}  -> result body without per-event fields
  imagegate:image:{image_id}                                -> latest full image_scored for that image
A new model or policy version changes the key, so old results are never served.

Every operation has a short timeout; after an error the cache is skipped for
`retry_after_s` (a tiny circuit breaker) so an outage costs one timeout, not one per event.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis

from consumer import metrics

log = logging.getLogger("imagegate.cache")


def _valid_content(raw: bytes | None, sha256: str) -> dict[str, Any] | None:
    """A cache entry we can trust, or None (treated as a miss and overwritten after scoring)."""
    if raw is None:
        return None
    try:
        content = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(content, dict) or content.get("content_sha256") != sha256:
        return None
    reject = content.get("reject")
    if reject is not None:
        ok = isinstance(reject, dict) and isinstance(reject.get("code"), str) and isinstance(reject.get("message"), str)
        return content if ok else None
    signals = content.get("signals")
    if not isinstance(signals, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in signals.values()):
        return None
    return content


def content_key(model_version: str, policy_version: str, sha256: str) -> str:
    return f"imagegate:v{model_version}:{policy_version}:sha256:{sha256}"


def image_key(image_id: str) -> str:
    return f"imagegate:image:{image_id}"


class ResultCache:
    def __init__(self, url: str, ttl_s: int, timeout_s: float, retry_after_s: float, model_version: str, policy_version: str):
        self.ttl_s = ttl_s
        self.retry_after_s = retry_after_s
        self.model_version = model_version
        self.policy_version = policy_version
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=0)
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._was_up = True

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, op: str, e: Exception) -> None:
        metrics.CACHE.labels(op, "error").inc()
        metrics.REDIS_UP.set(0)
        with self._lock:
            self._down_until = time.monotonic() + self.retry_after_s
            if self._was_up:
                log.warning("redis unavailable, scoring continues without cache", extra={"error": str(e), "op": op})
            self._was_up = False

    def _ok(self) -> None:
        metrics.REDIS_UP.set(1)
        if not self._was_up:
            with self._lock:
                self._was_up = True
            log.info("redis available again")

    def get(self, sha256: str) -> dict[str, Any] | None:
        """Cached content-level result (signals, content hash, model) or None."""
        if not self._available():
            metrics.CACHE.labels("get", "skipped").inc()
            return None
        try:
            raw = self._client.get(content_key(self.model_version, self.policy_version, sha256))
        except redis.RedisError as e:
            self._failed("get", e)
            return None
        self._ok()
        content = _valid_content(raw, sha256)
        if raw is not None and content is None:
            log.warning("ignoring malformed cache entry", extra={"content_sha256": sha256})
        metrics.CACHE.labels("get", "hit" if content is not None else "miss").inc()
        return content

    def put_many(self, results: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
        """Write (image_scored body, content result or None) pairs in one pipeline round trip.

        The content result holds what depends only on the bytes (hash, signals incl. model
        outputs, or a decode rejection), so a hit is re-judged under the event's own profile.
        """
        if not results:
            return
        if not self._available():
            metrics.CACHE.labels("put", "skipped").inc(len(results))
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for body, content in results:
                if content is not None and content.get("content_sha256"):
                    key = content_key(self.model_version, self.policy_version, content["content_sha256"])
                    pipe.set(key, json.dumps(content), ex=self.ttl_s)
                pipe.set(image_key(body["image_id"]), json.dumps(body), ex=self.ttl_s)
            pipe.execute()
        except redis.RedisError as e:
            self._failed("put", e)
            return
        self._ok()
        metrics.CACHE.labels("put", "ok").inc(len(results))

    def close(self) -> None:
        self._client.close()
