"""The model failing is ours: 5xx, never a seller-facing reject. The service runs in-process here
(uvicorn on a thread, real HTTP) so its predictor can be one whose device breaks on demand."""

from __future__ import annotations

import threading
import time

import pytest

from tests.api.conftest import ApiServer
from tests.harness import free_port
from tests.images import encode, photo


@pytest.fixture
def broken_api(plumbing_model, tmp_path):
    import uvicorn

    import model
    from consumer.config import load_settings
    from consumer.policy import Policy
    from scoring_api.app import create_app
    from scoring_api.config import ApiSettings
    from scoring_api.service import ScoringService

    from tests.harness import BreakableDevice

    dev = BreakableDevice(model.load(plumbing_model, "cpu"))
    s = load_settings(model_path=plumbing_model, device="cpu", max_batch_delay_ms=1.0)
    service = ScoringService(s, ApiSettings(cache=False), dev, Policy.from_file(s.policy_file), None)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    client = ApiServer({}, tmp_path / "unused.log")
    client.port = port
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "in-process server did not start"
        time.sleep(0.05)
    yield client, dev
    server.should_exit = True
    thread.join(30)


def test_a_failing_model_is_a_5xx_and_recovers(broken_api):
    api, dev = broken_api
    r = api.score(encode(photo(96, 64)))
    # the device fails and no image has scored yet, so nothing shows the image is at fault:
    # our trouble, transient (503 + Retry-After), logged, never blamed on the seller
    assert r.status == 503 and "retry-after" in r.headers, r
    assert r.json()["error"]["code"] == "model_failed"
    assert "decision" not in r.json()
    assert api.request("GET", "/readyz").status == 200  # the inference thread lives on

    dev.broken = False
    r = api.score(encode(photo(96, 64)))
    assert r.status == 200 and r.json()["decision"] in ("accept", "demote", "reject"), r
