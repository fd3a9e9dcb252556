"""A real worker pointed at a closed port: the broker-down noise is one line and a summary,
not a line per connection attempt (~42 lines/s before issue 23)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.harness import REPO, free_port

pytestmark = pytest.mark.integration

WATCH_S = 6  # how long the worker runs with the broker away once it is up; bounded, not a speed figure


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_worker_without_a_broker_logs_the_outage_once_and_counts_the_rest(plumbing_model, tmp_path):
    env = dict(os.environ, IMAGEGATE_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",  # nothing listens there
               IMAGEGATE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", IMAGEGATE_MODEL_PATH=str(plumbing_model),
               IMAGEGATE_DEVICE="cpu", IMAGEGATE_INFERENCE_THREADS="1", IMAGEGATE_METRICS_HOST="127.0.0.1",
               IMAGEGATE_METRICS_PORT=str(free_port()), IMAGEGATE_LOG_LEVEL="INFO")
    env["IMAGEGATE_KAFKA__reconnect.backoff.max.ms"] = "500"  # librdkafka retries at least twice a second
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "consumer"], env=env, cwd=REPO, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and "kafka broker unreachable" not in log_path.read_text():
            time.sleep(0.2)
        assert proc.poll() is None and "kafka broker unreachable" in log_path.read_text(), log_path.read_text()[-3000:]
        time.sleep(WATCH_S)
        proc.terminate()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    recs = records(log_path)
    noise = [r for r in recs if r["logger"] == "imagegate.kafka" or r["msg"] == "kafka client error"]
    down = [r for r in recs if r["msg"].startswith("kafka broker unreachable")]
    summaries = [r for r in recs if r["msg"].startswith("kafka broker still unreachable")]
    assert len(down) == 1, [r["msg"] for r in recs]
    assert len(noise) <= 2, [r["msg"] for r in noise]  # librdkafka's first FAIL lines may precede the error callback
    (last,) = summaries  # at shutdown: the minute's summary is not due yet
    assert last["errors_suppressed"] >= 2 * WATCH_S, last  # what the old worker would have logged, one line each
