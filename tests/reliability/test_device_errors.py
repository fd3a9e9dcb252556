"""A sticky device error is our trouble, not the seller's and not a poison event: every image
of every batch fails for a while (think: CUDA error until the process restarts). v1 dead-lettered
every event after ~0.6 s of retries. v2 parks them for delayed retries, fails /healthz after a
few whole-batch failures (so the orchestrator restarts it), and scores them once the device works.
The worker runs in-process so its predictor can be that model; Kafka and Redis are real."""

from __future__ import annotations

import threading
import time

import pytest

from producer_tools.publish import make_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_sticky_device_error_fails_health_then_recovers_without_dead_lettering(pipeline, origin, plumbing_model):
    import model
    from consumer.policy import Policy
    from consumer.worker import Worker
    from tests.harness import BreakableDevice, Collector

    dev = BreakableDevice(model.load(plumbing_model, "cpu"))
    events = [make_event(f"{origin.url}/distinct/{i}.jpg", image_id=f"d-{i}") for i in range(12)]
    pipeline.publish(events)
    out = Collector(pipeline.settings)
    settings = pipeline.settings.model_copy(update={"max_batch_size": 4, "metrics_port": 0,
                                                     "retry_delays_s": [1.0, 2.0, 4.0, 8.0, 16.0]})
    worker = Worker(settings, dev, Policy.from_file(settings.policy_file, settings.default_policy))
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 60
        while worker.health.live()[0] and time.monotonic() < deadline:
            time.sleep(0.2)
        ok, detail = worker.health.live()
        assert not ok and any("failed every image" in p for p in detail["problems"]), detail
        out.poll(1)
        assert out.dlq == [] and out.scored == []  # nothing dead-lettered, no verdict while the device is broken
        dev.broken = False  # the device works again (in production: the restarted process)
        assert out.wait_for({e.event_id for e in events}, 90, t.is_alive) == set()
        assert out.dlq == [] and len(out.scored) == len(events)
        assert worker.health.live()[0]
    finally:
        worker.stop()
        t.join(60)
        out.close()
    assert not t.is_alive()
