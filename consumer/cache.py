"""Redis result cache. Redis is a cache, never a dependency of correctness.

Keys (DESIGN: Cache):
  imagegate:v{model_version}:{policy_version}:sha256:{sha}  -> the content-level result (ContentResult)
  imagegate:image:{image_id}                                -> latest image_scored for that image, plus
      source_url, source_topic, source_partition, source_offset, source_occurred_at_ms
A new model or policy version changes the key, so old results are never served.

The latest-result write never goes backwards: a Lua script replaces the stored record only
when the new one is not older: a later upload time (`occurred_at`) when both events carry
one, else a higher offset of the same input partition; otherwise (different topics, no
times) the last write wins.

Every operation has a short timeout; after an error the cache is skipped for
`retry_after_s` (a tiny circuit breaker) so an outage costs one timeout, not one per event.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING

import redis

from consumer import metrics
from consumer.events import ImageScored
from consumer.work import ContentResult

if TYPE_CHECKING:
    from consumer.work import WorkItem

log = logging.getLogger("imagegate.cache")


# KEYS[1] image key; ARGV: value, ttl, topic, partition, offset, occurred_at_ms ("" when unknown)
_SET_IF_NOT_OLDER = """
local old = redis.call('GET', KEYS[1])
if old then
  local ok, o = pcall(cjson.decode, old)
  if ok and type(o) == 'table' then
    local new_at = tonumber(ARGV[6])
    local old_at = tonumber(o['source_occurred_at_ms'])
    if new_at and old_at and new_at ~= old_at then
      if new_at < old_at then return 0 end
    elseif o['source_topic'] == ARGV[3] and tonumber(o['source_partition']) == tonumber(ARGV[4]) then
      if tonumber(o['source_offset']) and tonumber(o['source_offset']) > tonumber(ARGV[5]) then return 0 end
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


def content_key(model_version: str, policy_version: str, sha256: str) -> str:
    return f"imagegate:v{model_version}:{policy_version}:sha256:{sha256}"


def image_key(image_id: str) -> str:
    return f"imagegate:image:{image_id}"


def latest_record(scored: ImageScored, source: dict) -> str:
    """The latest-result record: the `image_scored` JSON with the source fields appended.

    Spliced, not `{**scored.model_dump(mode="json"), ...}` re-encoded: pydantic's own encoder
    writes the event (as the sink does) and the few source fields are added to its object,
    which on the cache-hit path was a third of the sink's time per event."""
    body = scored.model_dump_json()
    return body[:-1] + "," + json.dumps(source, separators=(",", ":"))[1:]


class ResultCache:
    def __init__(self, url: str, ttl_s: int, timeout_s: float, retry_after_s: float, model_version: str, policy_version: str):
        self.ttl_s = ttl_s
        self.retry_after_s = retry_after_s
        self.model_version = model_version
        self.policy_version = policy_version
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=0)
        # EVALSHA in the pipeline (redis-py loads the script once per pipeline if Redis lost it), not the text per record
        self._set_if_not_older = self._client.register_script(_SET_IF_NOT_OLDER)
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

    def get_many(self, shas: list[str]) -> list[ContentResult | None]:
        """`get` for many hashes in one round trip (MGET): the claimed-hash lookups of a consume batch."""
        if not shas:
            return []
        if not self._available():
            metrics.CACHE.labels("get", "skipped").inc(len(shas))
            return [None] * len(shas)
        try:
            raws = self._client.mget([content_key(self.model_version, self.policy_version, h) for h in shas])
        except redis.RedisError as e:
            self._failed("get", e)
            return [None] * len(shas)
        self._ok()
        found = [self._parse(raw, h) for raw, h in zip(raws, shas)]
        hits = sum(1 for c in found if c is not None)
        if hits:
            metrics.CACHE.labels("get", "hit").inc(hits)
        if hits < len(found):
            metrics.CACHE.labels("get", "miss").inc(len(found) - hits)
        return found

    @staticmethod
    def _parse(raw: bytes | None, sha256: str) -> ContentResult | None:
        content = ContentResult.from_json(raw, sha256)
        if raw is not None and content is None:
            log.warning("ignoring malformed cache entry", extra={"content_sha256": sha256})
        return content

    def get(self, sha256: str) -> ContentResult | None:
        """Cached content-level result or None (a malformed entry is a miss, overwritten after scoring)."""
        if not self._available():
            metrics.CACHE.labels("get", "skipped").inc()
            return None
        try:
            raw = self._client.get(content_key(self.model_version, self.policy_version, sha256))
        except redis.RedisError as e:
            self._failed("get", e)
            return None
        self._ok()
        content = self._parse(raw, sha256)
        metrics.CACHE.labels("get", "hit" if content is not None else "miss").inc()
        return content

    def put_many(self, results: "list[tuple[WorkItem, ImageScored]]") -> None:
        """Write new content results and the latest result per image, in one pipeline round trip."""
        if not results:
            return
        if not self._available():
            metrics.CACHE.labels("put", "skipped").inc(len(results))
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for item, scored in results:
                content = item.content
                if item.store_content and content is not None and content.sha256 and item.verified:
                    pipe.set(content_key(self.model_version, self.policy_version, content.sha256), content.to_json(),
                             ex=self.ttl_s)
                ev, src = item.event, item.source
                occurred = ev.occurred_at if ev else None
                occurred_ms = int(occurred.timestamp() * 1000) if occurred else None
                record = latest_record(scored, {"source_url": ev.url if ev else None, "source_topic": src.topic,
                                                "source_partition": src.partition, "source_offset": src.offset,
                                                "source_occurred_at_ms": occurred_ms})
                self._set_if_not_older(keys=[image_key(scored.image_id)], client=pipe,
                                       args=[record, self.ttl_s, src.topic, src.partition, src.offset,
                                             occurred_ms if occurred_ms is not None else ""])
            pipe.execute()
        except redis.RedisError as e:
            self._failed("put", e)
            return
        self._ok()
        metrics.CACHE.labels("put", "ok").inc(len(results))

    def put_content(self, content: ContentResult) -> None:
        """Write one content-level result only (the scoring API: no Kafka source, so no latest-per-image record)."""
        if not self._available():
            metrics.CACHE.labels("put", "skipped").inc()
            return
        try:
            self._client.set(content_key(self.model_version, self.policy_version, content.sha256), content.to_json(),
                             ex=self.ttl_s)
        except redis.RedisError as e:
            self._failed("put", e)
            return
        self._ok()
        metrics.CACHE.labels("put", "ok").inc()

    def close(self) -> None:
        self._client.close()
