"""A programmable local image origin for tests: static files plus misbehaving routes."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Origin:
    """Routes: /img/<name> serves files from `root`; /status/<code>; /redirect?to=URL;
    /flaky/<n>/<name> (500 for the first n requests, then the file); /slow/<name> (trickles)."""

    def __init__(self, root: Path):
        self.root = root
        self.hits: dict[str, int] = {}
        origin = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                path, _, query = self.path.partition("?")
                origin.hits[path] = origin.hits.get(path, 0) + 1
                parts = path.strip("/").split("/")
                if parts[0] == "img":
                    return self._file(parts[1])
                if parts[0] == "status":
                    return self._send(int(parts[1]), b"nope", "text/plain")
                if parts[0] == "redirect":
                    self.send_response(302)
                    self.send_header("Location", query.split("to=", 1)[1])
                    self.end_headers()
                    return
                if parts[0] == "flaky":
                    if origin.hits[path] <= int(parts[1]):
                        return self._send(500, b"busy", "text/plain")
                    return self._file(parts[2])
                if parts[0] == "slow":
                    data = (origin.root / parts[1]).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    for i in range(0, len(data), 256):
                        self.wfile.write(data[i:i + 256])
                        self.wfile.flush()
                        time.sleep(0.2)
                    return
                if parts[0] == "html":
                    return self._send(200, b"<html><body>not an image</body></html>", "image/jpeg")
                return self._send(404, b"missing", "text/plain")

            def _file(self, name):
                p = origin.root / name
                if not p.is_file():
                    return self._send(404, b"missing", "text/plain")
                self._send(200, p.read_bytes(), "image/jpeg")

            def _send(self, code, body, ctype):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
