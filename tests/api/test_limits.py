"""Admission and deadlines, batching across requests, and API keys: each on its own server.

Deterministic by construction, no timing assertions: requests are held at a gated origin
(their fetch provably in progress) or in the batcher (a batch leaves only when full)."""

from __future__ import annotations

import threading

import pytest

from scoring_api.keys import digest_of
from tests.images import encode, photo
from tests.origin import distinct_jpeg


def _in_threads(fns):
    out: list = [None] * len(fns)

    def run(i, fn):
        out[i] = fn()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    return threads, out


def test_full_slots_answer_429_and_the_deadline_504(start_api, gated_origin):
    api = start_api(IMAGEGATE_API_CONCURRENCY="2", IMAGEGATE_API_DEADLINE_S="1", IMAGEGATE_API_RETRY_AFTER_S="3",
                    IMAGEGATE_FETCH_TIMEOUT_S="60")
    held = [lambda i=i: api.score_url(f"{gated_origin.url}/gate/{i}.jpg") for i in range(2)]
    threads, answers = _in_threads(held)
    gated_origin.wait_arrivals(2)  # both admitted: their fetches are at the origin, holding both slots

    r = api.score(encode(photo(64, 48)))
    assert r.status == 429, r
    assert r.headers["retry-after"] == "3" and r.json()["error"]["code"] == "overloaded"
    assert api.metric("imagegate_api_throttled_total") == 1
    assert api.metric("imagegate_api_in_flight_requests") == 2

    for t in threads:
        t.join(60)
    assert [a.status for a in answers] == [504, 504], answers  # the gate is still shut: past the 1 s deadline
    assert all(a.json()["error"]["code"] == "deadline_exceeded" for a in answers)
    # The slots stay held until the work ends (the bound on work is real): still 429.
    assert api.score(encode(photo(64, 48))).status == 429

    gated_origin.gate.set()  # the fetches complete, are scored, and free their slots
    api.wait_metric("imagegate_api_in_flight_requests", 0)
    r = api.score(encode(photo(64, 48)))
    assert r.status == 200, r
    assert api.metric("imagegate_api_request_duration_seconds_count", {"route": "/v1/score", "status": "429"}) == 2
    assert api.metric("imagegate_api_failures_total", {"why": "deadline_exceeded"}) == 2


def test_concurrent_requests_share_one_model_batch(start_api):
    n = 4
    api = start_api(IMAGEGATE_MAX_BATCH_SIZE=str(n), IMAGEGATE_MAX_BATCH_DELAY_MS="120000", IMAGEGATE_API_DEADLINE_S="300")
    threads, answers = _in_threads([lambda i=i: api.score(distinct_jpeg(1000 + i)) for i in range(n)])
    for t in threads:
        t.join(300)
    assert [a.status for a in answers] == [200] * n, answers
    # A batch leaves at max_batch_size or after 120 s: all four arrived, so one batch of four ran.
    assert api.metric("imagegate_batch_size_count") == 1
    assert api.metric("imagegate_batch_size_sum") == n
    assert api.metric("imagegate_images_inferred_total") == n
    assert len({a.json()["content_sha256"] for a in answers}) == n


def test_identical_concurrent_uploads_are_scored_once(start_api):
    api = start_api(IMAGEGATE_MAX_BATCH_SIZE="2", IMAGEGATE_MAX_BATCH_DELAY_MS="120000", IMAGEGATE_API_DEADLINE_S="300")
    same = distinct_jpeg(2000)
    threads, answers = _in_threads([lambda: api.score(same) for _ in range(2)])
    # One leads into the batcher (a batch of 2 leaves only when full), the other parks behind it.
    api.wait_metric("imagegate_step_duration_seconds_count", 2, {"step": "single_flight"})
    assert api.metric("imagegate_images_inferred_total") == 0  # the leader waits in the batcher
    other = api.score(distinct_jpeg(2001))  # fills the batch: [leader, other]
    for t in threads:
        t.join(300)
    assert other.status == 200 and [a.status for a in answers] == [200, 200], answers
    assert api.metric("imagegate_images_inferred_total") == 2  # three requests, two distinct images
    first, second = (a.json() for a in answers)
    assert sorted([first["cached"], second["cached"]]) == [False, True]  # the follower got the leader's result
    assert first["signals"] == second["signals"] and first["content_sha256"] == second["content_sha256"]


def test_api_keys_by_digest(start_api, tmp_path):
    keys = tmp_path / "api-keys"
    keys.write_text(f"# sha256 of each key\n{digest_of('first-key')}\n\n{digest_of('second-key').upper()}\n")
    api = start_api(IMAGEGATE_API_KEYS_FILE=str(keys))
    data = encode(photo(64, 48))

    r = api.score(data)
    assert r.status == 401 and r.headers["www-authenticate"].startswith("Bearer"), r
    assert api.request("POST", "/v1/score", data, {"Content-Type": "image/jpeg",
                                                   "Authorization": "Bearer not-a-key"}).status == 401
    assert api.request("POST", "/v1/score", data, {"Content-Type": "image/jpeg",
                                                   "Authorization": "Basic Zmlyc3Qta2V5"}).status == 401
    for key in ("first-key", "second-key"):
        r = api.request("POST", "/v1/score", data, {"Content-Type": "image/jpeg", "Authorization": f"Bearer {key}"})
        assert r.status == 200, (key, r)
    assert api.request("GET", "/healthz").status == 200  # ops routes stay open to the kubelet and Prometheus

    keys.write_text(digest_of("rotated-key") + "\n")  # a rotated secret: read again, no restart
    auth = {"Content-Type": "image/jpeg"}
    assert api.request("POST", "/v1/score", data, {**auth, "Authorization": "Bearer first-key"}).status == 401
    assert api.request("POST", "/v1/score", data, {**auth, "Authorization": "Bearer rotated-key"}).status == 200


@pytest.mark.parametrize("content,needle", [("", "no digests"), ("first-key\n", "line 1: not a SHA-256")])
def test_a_bad_keys_file_refuses_to_start(api_env, tmp_path, content, needle):
    import subprocess
    import sys

    from tests.harness import REPO

    keys = tmp_path / "keys"
    keys.write_text(content)
    r = subprocess.run([sys.executable, "-m", "scoring_api", "--port", "0"], env={**api_env, "IMAGEGATE_API_KEYS_FILE": str(keys)},
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and needle in r.stderr
    assert "first-key" not in r.stderr  # a key written by mistake is never echoed


def test_a_body_that_does_not_arrive_by_the_deadline_is_408(start_api):
    import http.client
    import json
    import socket

    api = start_api(IMAGEGATE_API_DEADLINE_S="1")
    with socket.create_connection(("127.0.0.1", api.port), timeout=60) as sock:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n"
                     + b"\xff" * 10)  # and then nothing: the rest never comes
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        body = json.loads(resp.read())
    assert resp.status == 408 and body["error"]["code"] == "request_timeout", body
    api.wait_metric("imagegate_api_in_flight_requests", 0)  # its slot was given back


def test_sigterm_stops_cleanly(start_api):
    api = start_api()
    assert api.score(encode(photo(64, 48))).status == 200
    import signal

    # uvicorn drains, runs the lifespan shutdown (the inference thread stops), then re-raises the
    # SIGTERM it caught so a supervisor sees why the process ended.
    assert api.stop() == -signal.SIGTERM
    assert "Application shutdown complete" in api.log_path.read_text()
