"""Whose problem a fetch failure is, end to end through a real worker, broker and Redis
(random-weights plumbing model: delivery, not quality)."""

from __future__ import annotations

import pytest

from producer_tools.publish import make_event
from tests.harness import read_all

pytestmark = pytest.mark.integration


def test_a_host_that_cannot_exist_is_the_sellers_reject_at_once_and_nothing_is_dead_lettered(pipeline, origin):
    """Issue 23: `no-such-host.invalid` was retried as our DNS trouble for minutes, then
    dead-lettered. A special-use name is refused without a lookup: a `fetch_failed` reject.
    Delayed retries are set to 10 minutes, so an outcome inside the wait below can only be
    one that was never parked as transient."""
    w = pipeline.worker(IMAGEGATE_RETRY_DELAYS_S="[600]").start()
    out = pipeline.collector()
    gone = make_event("http://no-such-host.invalid/x.jpg", image_id="img-nohost")
    good = make_event(f"{origin.url}/img/s0-sharp.jpg", image_id="img-ok")
    pipeline.publish([gone, good])
    assert out.wait_for({gone.event_id, good.event_id}, 60, w.alive) == set(), w.log_tail()
    by_src = {b["source_event_id"]: b for b in out.scored}
    body = by_src[gone.event_id]
    assert body["decision"] == "reject"
    (reason,) = [r for r in body["reasons"] if r["code"] == "fetch_failed"]
    assert "special-use name" in reason["message"]
    assert by_src[good.event_id]["signals"]
    assert read_all(pipeline.settings, pipeline.settings.topic_dlq) == []
    assert w.metric("imagegate_retries_total", {"stage": "fetch"}) == 0
    assert w.metric("imagegate_delayed_events") == 0
    assert w.stop() == 0
