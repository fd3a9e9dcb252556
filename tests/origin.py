"""A programmable local image origin for tests: static files plus misbehaving routes."""

from __future__ import annotations

import functools
import gzip
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Origin:
    """Routes: /img/<name> serves files from `root`; /status/<code>; /redirect?to=URL;
    /flaky/<n>/<name> (500 for the first n requests, then the file); /slow/<name> (trickles);
    /html (HTML served as image/jpeg); /chunked/<name> (no Content-Length);
    /hang/<name> (accepts, then says nothing for `hang_s`); /reset/<name> (TCP reset, no reply);
    /outage/<name> (500 while `outage` is set, the file once it is cleared);
    /gzipbomb (a small gzip body, Content-Encoding: gzip, that inflates to 64 MiB);
    /distinct/<n>.jpg (a different small photo for every n, the same bytes for the same n).

    With `tls` (a server-side SSLContext, see tests/https_origin.py) the same routes are served
    over HTTPS at https://localhost:<port>; the handshake runs on the request's thread, so a
    client that refuses the certificate only ends its own connection."""

    def __init__(self, root: Path, hang_s: float = 30.0, tls: ssl.SSLContext | None = None):
        self.root = root
        self.tls = tls
        self.hits: dict[str, int] = {}
        self.hang_s = hang_s
        self.outage = threading.Event()
        self._lock = threading.Lock()
        origin = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                path, _, query = self.path.partition("?")
                with origin._lock:
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
                if parts[0] == "chunked":
                    data = (origin.root / parts[1]).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    try:
                        self.wfile.write(data)  # body ends when the connection closes
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                if parts[0] == "hang":
                    time.sleep(origin.hang_s)
                    self.close_connection = True
                    return
                if parts[0] == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()  # linger 0: the client sees a connection reset
                    return
                if parts[0] == "outage":
                    if origin.outage.is_set():
                        return self._send(500, b"down", "text/plain")
                    return self._file(parts[1])
                if parts[0] == "gzipbomb":
                    body = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if parts[0] == "distinct":
                    return self._send(200, distinct_jpeg(int(parts[1].split(".")[0])), "image/jpeg")
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

        class Server(ThreadingHTTPServer):
            def finish_request(self, request, client_address):
                if tls is not None:
                    try:
                        request.settimeout(10)  # a client that never finishes the handshake
                        request = tls.wrap_socket(request, server_side=True)
                    except (ssl.SSLError, OSError):  # the client refused our certificate: its right
                        return
                super().finish_request(request, client_address)

        self.server = Server(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"https://localhost:{self.server.server_address[1]}"
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@functools.lru_cache(maxsize=4096)
def distinct_jpeg(n: int) -> bytes:
    """A small photo unique to n (deterministic): streams of these go through decode and the model."""
    from tests.images import encode, photo

    return encode(photo(160, 120, seed=n), quality=90)
