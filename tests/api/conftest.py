"""The scoring API as a real subprocess (`python -m scoring_api`) on a free loopback port, with
the random-weights plumbing model, and a gated origin that holds fetches until a test lets go.

Every response a test reads through `ApiServer.request` is validated against
scoring_api/openapi.yaml (tests/api/openapi_check.py)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable

import pytest

from tests.api.openapi_check import document, validate_response
from tests.harness import REPO, free_port, log_tail, metric_sum, start_module

API_PATHS = set(document()["paths"])


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:300]!r}>"


class ApiServer:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.env = {**env, "IMAGEGATE_API_PORT": str(self.port), "IMAGEGATE_API_HOST": "127.0.0.1"}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, wait_ready: float = 120.0) -> "ApiServer":
        self.proc = start_module("scoring_api", self.env, self.log_path,
                                 lambda: self.request("GET", "/readyz", check=False).status == 200, "scoring API", wait_ready)
        return self

    def request(self, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
                headers: dict[str, str] | None = None, timeout: float = 120.0, check: bool = True) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            chunked = body is not None and not isinstance(body, bytes)
            conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
            r = conn.getresponse()
            resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()
        route = path.split("?")[0]
        if check and route in API_PATHS:
            validate_response(route, method, resp.status, resp.headers, resp.body)
        return resp

    def score(self, data: bytes, ctype: str = "image/jpeg", query: str = "", **kw: Any) -> Response:
        return self.request("POST", "/v1/score" + (f"?{query}" if query else ""), data, {"Content-Type": ctype}, **kw)

    def score_url(self, url: str, **fields: Any) -> Response:
        return self.request("POST", "/v1/score", json.dumps({"url": url, **fields}).encode(),
                            {"Content-Type": "application/json"})

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        r = self.request("GET", "/metrics")
        assert r.status == 200
        return metric_sum(r.body.decode(), name, labels)

    def wait_metric(self, name: str, value: float, labels: dict[str, str] | None = None, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.metric(name, labels) != value:
            assert time.monotonic() < deadline, f"{name} never reached {value} (now {self.metric(name, labels)})"
            time.sleep(0.05)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)

    def log_tail(self, n: int = 40) -> str:
        return log_tail(self.log_path, n)


def multipart(fields: dict[str, str], image: bytes, filename: str = "photo.jpg") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
                 f"Content-Type: image/jpeg\r\n\r\n".encode() + image + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def api_env(plumbing_model) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEGATE_")}
    env.update({
        "PYTHONPATH": str(REPO),
        "IMAGEGATE_MODEL_PATH": str(plumbing_model),
        "IMAGEGATE_DEVICE": "cpu",
        "IMAGEGATE_INFERENCE_THREADS": "1",
        "IMAGEGATE_ALLOW_NETWORKS": '["127.0.0.0/8"]',
        "IMAGEGATE_FETCH_RETRIES": "0",
        "IMAGEGATE_API_CACHE": "false",
        "IMAGEGATE_LOG_LEVEL": "INFO",
    })
    return env


@pytest.fixture(scope="module")
def start_api(api_env, tmp_path_factory):
    """start_api(**env) -> a running ApiServer with these IMAGEGATE_* on top of the module's base; stopped at the end."""
    servers: list[ApiServer] = []
    logs = tmp_path_factory.mktemp("api-logs")

    def start(**extra: str) -> ApiServer:
        s = ApiServer({**api_env, **extra}, logs / f"api-{len(servers)}.log")
        servers.append(s)
        return s.start()

    yield start
    for s in servers:
        s.stop()


class GatedOrigin:
    """GET /gate/<n>.jpg waits until `open()` (bounded), then serves a distinct small photo.
    `arrived` counts requests that reached it: a fetch is provably in progress."""

    def __init__(self, hold_s: float = 60.0):
        self.gate = threading.Event()
        self.arrived = 0
        self._lock = threading.Lock()
        origin = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                from tests.origin import distinct_jpeg

                with origin._lock:
                    origin.arrived += 1
                origin.gate.wait(hold_s)
                data = distinct_jpeg(int(self.path.rsplit("/", 1)[1].split(".")[0]))
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_arrivals(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.arrived < n:
            assert time.monotonic() < deadline, f"only {self.arrived} of {n} fetches reached the origin"
            time.sleep(0.02)

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gated_origin():
    o = GatedOrigin()
    yield o
    o.close()
