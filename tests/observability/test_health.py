"""/healthz (every registered thread alive and beating, the oldest event in flight within
its bound, no sticky device error, nothing fatal) and /readyz (model loaded, broker
reachable, partitions assigned, nothing fatal): the HTTP contract in-process, then a real
worker process whose broker does not exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from consumer import metrics
from consumer.health import DEVICE_FAILURES_UNHEALTHY, Health
from tests.harness import REPO, free_port


def get(port: int, path: str) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            code, body = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        code, body = e.code, e.read().decode()
    try:
        return code, json.loads(body)
    except ValueError:
        return code, body


@pytest.fixture
def ops():
    health = Health(stall_after_s=0.5, in_flight_max_age_s=5)
    server = metrics.serve(health, "127.0.0.1", 0)
    yield health, server.server_port
    server.shutdown()
    server.server_close()


def test_healthz_turns_503_when_the_poll_loop_stalls_and_recovers_on_the_next_beat(ops):
    health, port = ops
    health.beat()
    code, body = get(port, "/healthz")
    assert code == 200 and body["ok"] is True
    time.sleep(0.7)  # no beat for longer than stall_after_s: the loop is stuck
    code, body = get(port, "/healthz")
    assert code == 503 and body["ok"] is False and body["last_progress_s_ago"] >= 0.5
    health.beat()
    assert get(port, "/healthz")[0] == 200


def test_readyz_needs_model_broker_and_partitions(ops):
    health, port = ops
    code, body = get(port, "/readyz")  # nothing yet: starting up
    assert code == 503 and body == {"ok": False, "model_loaded": False, "broker_reachable": False, "assigned_partitions": 0}
    health.model_loaded = True
    health.broker_ok = True
    code, body = get(port, "/readyz")  # connected, but before the first assignment
    assert code == 503 and body["assigned_partitions"] == 0
    health.assigned = 4
    code, body = get(port, "/readyz")
    assert code == 200 and body["ok"] is True
    health.broker_ok = False  # error_cb saw _ALL_BROKERS_DOWN / stats say no broker UP
    code, body = get(port, "/readyz")
    assert code == 503 and body["broker_reachable"] is False
    assert get(port, "/nope")[0] == 404
    code, text = get(port, "/metrics")
    assert code == 200 and "imagegate_last_progress_timestamp_seconds" in text


def test_healthz_fails_when_a_pipeline_thread_dies(ops):
    health, port = ops
    t = threading.Thread(target=lambda: None, name="sink")
    t.start()
    t.join()  # the thread is gone, as when an exception escaped it
    health.register("sink", t, heartbeat=False)
    health.beat()
    code, body = get(port, "/healthz")
    assert code == 503 and "sink thread died" in body["problems"]


def test_healthz_fails_when_a_registered_thread_stops_beating(ops):
    health, port = ops
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="inference", daemon=True)
    t.start()
    health.register("inference", t)
    health.beat()
    assert get(port, "/healthz")[0] == 200
    time.sleep(0.7)  # alive, but stuck: no beat for longer than stall_after_s
    health.beat()  # the poll loop itself is fine
    code, body = get(port, "/healthz")
    assert code == 503 and any(p.startswith("inference thread made no progress") for p in body["problems"])
    health.beat("inference")
    assert get(port, "/healthz")[0] == 200
    stop.set()


def test_healthz_fails_when_an_event_is_in_flight_past_its_bound(ops):
    health, port = ops
    age = {"s": 1.0}
    health.oldest_in_flight = lambda: age["s"]
    health.beat()
    assert get(port, "/healthz")[0] == 200
    age["s"] = 6.0  # bound is 5 s
    health.beat()
    code, body = get(port, "/healthz")
    assert code == 503 and body["oldest_in_flight_s"] == 6.0
    assert "imagegate_oldest_in_flight_seconds 6.0" in get(port, "/metrics")[1]


def test_sticky_device_errors_and_fatal_errors_fail_health(ops):
    health, port = ops
    health.model_loaded, health.broker_ok, health.assigned = True, True, 2
    health.beat()
    health.device_failures = DEVICE_FAILURES_UNHEALTHY
    assert get(port, "/healthz")[0] == 503
    health.device_failures = 0
    health.beat()
    assert get(port, "/healthz")[0] == 200 and get(port, "/readyz")[0] == 200
    health.set_fatal("broker refused a record for image_scored permanently")
    code, body = get(port, "/readyz")
    assert code == 503 and "refused" in body["fatal"]
    assert get(port, "/healthz")[0] == 503


@pytest.mark.integration
def test_real_worker_without_a_broker_is_alive_but_not_ready(plumbing_model, tmp_path):
    port = free_port()
    env = dict(os.environ, IMAGEGATE_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",  # nothing listens there
               IMAGEGATE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", IMAGEGATE_MODEL_PATH=str(plumbing_model),
               IMAGEGATE_DEVICE="cpu", IMAGEGATE_INFERENCE_THREADS="1", IMAGEGATE_METRICS_HOST="127.0.0.1",
               IMAGEGATE_METRICS_PORT=str(port), IMAGEGATE_LOG_LEVEL="DEBUG",
               IMAGEGATE_KAFKA__reconnect_backoff_max_ms="500")
    env["IMAGEGATE_KAFKA__reconnect.backoff.max.ms"] = env.pop("IMAGEGATE_KAFKA__reconnect_backoff_max_ms")
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "consumer"], env=env, cwd=REPO, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if get(port, "/healthz")[0] == 200 and get(port, "/readyz")[1].get("model_loaded"):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert proc.poll() is None, log_path.read_text()
        seen = []
        for _ in range(10):  # over ~6 s (more than one librdkafka stats interval): alive, never ready
            seen.append((get(port, "/healthz")[0], get(port, "/readyz")))
            time.sleep(0.6)
        assert all(h == 200 for h, _ in seen), seen
        assert all(code == 503 for _, (code, _) in seen), seen
        last = seen[-1][1][1]
        assert last["model_loaded"] is True and last["broker_reachable"] is False and last["assigned_partitions"] == 0
    finally:
        proc.kill()
        proc.wait(10)
    lines = log_path.read_text().splitlines()
    assert lines
    for line in lines:  # librdkafka's connection errors included: one JSON object per line
        rec = json.loads(line)
        assert {"ts", "level", "logger", "msg"} <= set(rec), line
