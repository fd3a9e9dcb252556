"""HTTPS connection reuse: what keeping verified connections (consumer/fetch/pool.py) saves.

A local HTTPS origin (a private trustme CA, a certificate for `localhost`, HTTP/1.1 keep-alive)
serves N distinct small bodies; the worker's real `consumer.fetch.Fetcher` fetches each once,
with the pool on (the default, `pool_max_idle=32`) and off (`pool_max_idle=0`: a new TCP
connection and TLS handshake for every image, the baseline), from 1 and 4 fetch threads.
Modes are interleaved round by round in one process, so the ratios compare like with like.

The origin counts the TLS handshakes it completed. Certificates are verified as always (the
fetcher is given the test CA the way a deployment gives a CA bundle); the SSRF check and the
name lookup run on every fetch, pooled or not (a fake getaddrinfo answers `localhost` with
127.0.0.1, so the system resolver's speed is not part of the figure). Figures, never pass/fail.

  .venv/bin/python bench/https_reuse.py [--images 200] [--kb 50] [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consumer.fetch import Fetcher, FetchLimits  # noqa: E402

HOST = "localhost"


class Origin:
    """HTTPS keep-alive origin: /img/<i> is body i; counts completed TLS handshakes."""

    def __init__(self, bodies: list[bytes], ctx: ssl.SSLContext):
        self.handshakes = 0
        self.requests = 0
        lock = threading.Lock()
        origin = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a connection serves many requests

            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                with lock:
                    origin.requests += 1
                body = bodies[int(self.path.rsplit("/", 1)[1])]
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request, client_address):
                # as real origins do: without it, Nagle holds the body behind the headers until the
                # client's delayed ACK (~40 ms a response), which would swamp what is measured
                request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:  # the handshake on the connection's own thread, as a real origin does
                    request = ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                with lock:
                    origin.handshakes += 1
                super().finish_request(request, client_address)

        self.server = Server(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def loopback(host, port, *a, **k):
    """getaddrinfo for the origin's name: 127.0.0.1 (the SSRF check still runs on it)."""
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


def run_mode(origin: Origin, ca: str, n: int, threads: int, pooled: bool) -> dict:
    limits = FetchLimits(allow_networks=("127.0.0.0/8",), retries=0, timeout_s=30, ca_certs=ca,
                         **({} if pooled else {"pool_max_idle": 0}))
    fetcher = Fetcher(limits, getaddrinfo=loopback)
    urls = [f"https://{HOST}:{origin.port}/img/{i}" for i in range(n)]
    lat: list[float] = []

    def one(url: str) -> int:
        t = time.perf_counter()
        size = len(fetcher.fetch(url).data)
        lat.append((time.perf_counter() - t) * 1000)
        return size

    shakes0, req0 = origin.handshakes, origin.requests
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        sizes = list(pool.map(one, urls))
    wall = time.perf_counter() - t0
    if fetcher.pool is not None:
        fetcher.pool.close()
    assert len(sizes) == n and origin.requests - req0 == n  # every image really fetched, once
    q = statistics.quantiles(lat, n=100)
    return {"images_per_s": n / wall, "p50_ms": statistics.median(lat), "p99_ms": q[98],
            "handshakes": origin.handshakes - shakes0, "bytes": sum(sizes)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--kb", type=int, default=50, help="body size of each image, KB")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    ap.add_argument("--threads", default="1,4")
    ap.add_argument("--out", help="also write the figures as JSON here")
    args = ap.parse_args(argv)

    import trustme

    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(ctx)
    bodies = [os.urandom(args.kb * 1024) for _ in range(args.images)]
    origin = Origin(bodies, ctx)
    modes = [(t, pooled) for t in (int(x) for x in args.threads.split(",")) for pooled in (True, False)]
    runs: dict[tuple[int, bool], list[dict]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        ca_file = str(Path(tmp) / "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
        run_mode(origin, ca_file, 10, 1, True)  # warm-up: imports, first handshake code paths
        for _ in range(args.rounds):
            for m in modes:
                runs[m].append(run_mode(origin, ca_file, args.images, *m))
    origin.close()

    def med(m, key):
        return statistics.median(r[key] for r in runs[m])

    print(f"HTTPS fetch of {args.images} x {args.kb} KB from a local keep-alive origin through consumer.fetch.Fetcher; "
          f"median of {args.rounds} interleaved rounds; {os.cpu_count()} CPUs")
    print(f"{'threads':>7}  {'pool':<5} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'TLS handshakes':>15}")
    figures = []
    for t, pooled in modes:
        m = (t, pooled)
        row = {"threads": t, "pool": pooled, "images_per_s": round(med(m, "images_per_s"), 1),
               "p50_ms": round(med(m, "p50_ms"), 2), "p99_ms": round(med(m, "p99_ms"), 2),
               "handshakes": int(med(m, "handshakes"))}
        figures.append(row)
        print(f"{t:>7}  {'on' if pooled else 'off':<5} {row['images_per_s']:>9} {row['p50_ms']:>8} {row['p99_ms']:>8} "
              f"{row['handshakes']:>15}")
    ratios = {}
    for t in sorted({t for t, _ in modes}):
        on, off = (t, True), (t, False)
        ratios[t] = round(med(on, "images_per_s") / med(off, "images_per_s"), 2)
        print(f"threads {t}: pooled / unpooled images/s = {ratios[t]}x; "
              f"p50 {med(off, 'p50_ms'):.2f} -> {med(on, 'p50_ms'):.2f} ms; "
              f"handshakes {int(med(off, 'handshakes'))} -> {int(med(on, 'handshakes'))}")
    if args.out:
        Path(args.out).write_text(json.dumps({"images": args.images, "kb": args.kb, "rounds": args.rounds,
                                              "cpu_count": os.cpu_count(), "modes": figures,
                                              "pooled_vs_unpooled": ratios}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
