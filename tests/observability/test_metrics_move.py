"""The gauges and histograms move with what the worker does, read from a real worker's /metrics
(real broker and Redis, random-weights plumbing model): not only declared, but filled."""

from __future__ import annotations

import time

import pytest

from producer_tools.publish import make_event

pytestmark = pytest.mark.integration


def wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def test_saturation_gauges_and_stage_histograms_follow_the_work(pipeline, origin, plumbing_model):
    from model import load

    origin.hang_s = 6
    w = pipeline.worker(IMAGEGATE_MAX_IN_FLIGHT="3", IMAGEGATE_FETCH_TIMEOUT_S="20", IMAGEGATE_FETCH_RETRIES="0",
                        IMAGEGATE_RETRY_DELAYS_S="[30]").start()
    out = pipeline.collector()
    m = load(plumbing_model, "cpu")
    info = {"model_name": m.name, "model_version": m.version, "device": "cpu"}
    assert w.metric("imagegate_model_info", info) == 1  # filled by the worker from the model it loaded
    assert w.metric("imagegate_in_flight_events") == 0 and w.metric("imagegate_consumer_paused") == 0
    t0 = w.metric("imagegate_last_progress_timestamp_seconds")

    # Three events hang at the origin: in flight at the bound, so consumption pauses.
    pipeline.publish([make_event(f"{origin.url}/hang/s0-sharp.jpg", image_id=f"h{i}") for i in range(3)])
    assert wait(lambda: w.metric("imagegate_consumer_paused") == 1, 30), w.log_tail()
    assert w.metric("imagegate_in_flight_events") == 3
    assert w.http("/healthz")[0] == 200 and w.metric("imagegate_oldest_in_flight_seconds") > 0
    # The origin hangs up: ours, transient -> parked for a delayed retry, out of the in-flight count.
    assert wait(lambda: w.metric("imagegate_delayed_events") == 3, 30), w.log_tail()
    assert wait(lambda: w.metric("imagegate_consumer_paused") == 0, 10)
    assert w.metric("imagegate_in_flight_events") == 0
    assert w.metric("imagegate_retries_total", {"stage": "fetch"}) == 3

    good = [make_event(f"{origin.url}/img/{n}", image_id=f"g-{n}") for n in ("s0-sharp.jpg", "s1-sharp.jpg", "s2-dark.jpg")]
    pipeline.publish(good)
    assert out.wait_for({e.event_id for e in good}, 60) == set(), w.log_tail()
    inferred = w.metric("imagegate_images_inferred_total")
    assert inferred == 3
    assert w.metric("imagegate_decode_duration_seconds_count", {"outcome": "ok"}) == 3
    assert w.metric("imagegate_queue_duration_seconds_count") == 3  # each inferred image waited once
    assert w.metric("imagegate_batch_size_sum") == inferred
    assert w.metric("imagegate_fetch_duration_seconds_count", {"outcome": "ok"}) == 3
    assert w.metric("imagegate_fetch_duration_seconds_count", {"outcome": "error"}) == 3  # the hangs
    assert w.metric("imagegate_step_duration_seconds_count", {"step": "judge", "outcome": "ok"}) == 3
    assert w.metric("imagegate_last_progress_timestamp_seconds") > t0
    assert w.metric("imagegate_inference_queue_items") == 0
    assert w.stop() == 0
