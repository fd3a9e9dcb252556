"""Scoring API throughput and latency, and its 429 behaviour under overload.

Starts `python -m scoring_api` (the SHIPPED default model, `model.load()`'s default weights;
cache off so every request runs decode + model) on a free loopback port, then runs closed-loop
clients, each with its own keep-alive connection, posting distinct ~1 MP JPEG photos as raw
bodies (distinct across clients at any moment, so single-flight never merges them):

- 1, 4 and 16 concurrent clients: requests/s, p50/p99 latency (ms);
- overload: 64 clients against IMAGEGATE_API_CONCURRENCY=16 on a fresh server: how many 429s,
  requests/s and p50/p99 of the accepted, p99 of the 429 answers.

Prints figures (and writes them as JSON with --out); never passes or fails on time.

    .venv/bin/python bench/api_bench.py [--seconds 20] [--out bench/results/api.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import distinct_jpegs  # noqa: E402
from bench.stack import free_port  # noqa: E402


class Server:
    def __init__(self, log: Path, **env: str):
        self.port = free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEGATE_")}
        full.update({"PYTHONPATH": str(REPO), "IMAGEGATE_API_HOST": "127.0.0.1", "IMAGEGATE_API_PORT": str(self.port),
                     "IMAGEGATE_API_CACHE": "false", "IMAGEGATE_LOG_LEVEL": "WARNING", **env})
        self.proc = subprocess.Popen([sys.executable, "-m", "scoring_api"], env=full, cwd=REPO,
                                     stdout=open(log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"scoring API exited with {self.proc.returncode}; see {log}")
            try:
                if self.get("/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"scoring API not ready after 300 s; see {log}")
            time.sleep(0.3)

    def get(self, path: str) -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def readyz(self) -> dict:
        return json.loads(self.get("/readyz")[1])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run_clients(port: int, images: list[bytes], clients: int, seconds: float) -> dict:
    ok: list[float] = []
    throttled: list[float] = []
    retry_after: list[str] = []
    other: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(c: int) -> None:
        mine = images[c::clients] or [images[c % len(images)]]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        i = 0
        while time.monotonic() < stop_at:
            body = mine[i % len(mine)]
            i += 1
            t0 = time.monotonic()
            try:
                conn.request("POST", "/v1/score", body=body, headers={"Content-Type": "image/jpeg"})
                r = conn.getresponse()
                r.read()
                status = r.status
                wait = r.getheader("retry-after") if status == 429 else None
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                status, wait = 0, None
            dt = (time.monotonic() - t0) * 1000
            with lock:
                if status == 200:
                    ok.append(dt)
                elif status == 429:
                    throttled.append(dt)
                    if wait:
                        retry_after.append(wait)
                else:
                    other[status] = other.get(status, 0) + 1
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    return {"clients": clients, "seconds": round(elapsed, 1), "ok": len(ok), "requests_per_s": round(len(ok) / elapsed, 2),
            "p50_ms": round(pct(ok, 50), 1), "p99_ms": round(pct(ok, 99), 1), "throttled_429": len(throttled),
            "throttled_429_with_retry_after": len(retry_after), "retry_after_values": sorted(set(retry_after)),
            "p99_429_ms": round(pct(throttled, 99), 1) if throttled else None, "other_statuses": other}


def measure(seconds: float = 20.0, levels: str = "1,4,16", overload_clients: int = 64, overload_concurrency: int = 16,
            size: str = "1200x860", log=print) -> dict:
    """Every figure of this bench as one dict (bench/run.py puts it under "api" in latest.json)."""
    w, h = (int(x) for x in size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="api-bench-"))
    n = max(64, overload_clients)
    images = [p.read_bytes() for p in distinct_jpegs(tmp, n, (w, h), prefix="api")]
    log(f"{n} distinct {w}x{h} JPEGs, {sum(map(len, images)) / n / 1024:.0f} KiB on average; cpu_count={os.cpu_count()}")

    results: dict = {"photo": f"{w}x{h}", "cpu_count": os.cpu_count(), "levels": []}
    server = Server(tmp / "api.log")
    try:
        info = server.readyz()
        results["model"] = info["model"]
        log(f"model {info['model']['name']} {info['model']['version']}")
        run_clients(server.port, images[:4], 1, min(5.0, seconds))  # warm-up (not reported)
        for clients in (int(x) for x in levels.split(",")):
            r = run_clients(server.port, images, clients, seconds)
            results["levels"].append(r)
            log(f"{clients:>3} clients: {r['requests_per_s']:7.2f} req/s  p50 {r['p50_ms']:8.1f} ms  "
                f"p99 {r['p99_ms']:8.1f} ms  (ok {r['ok']}, 429 {r['throttled_429']}, other {r['other_statuses']})")
    finally:
        server.stop()

    server = Server(tmp / "api-overload.log", IMAGEGATE_API_CONCURRENCY=str(overload_concurrency))
    try:
        run_clients(server.port, images[:4], 1, min(5.0, seconds))
        r = run_clients(server.port, images, overload_clients, seconds)
        r["concurrency_limit"] = overload_concurrency
        results["overload"] = r
        total = r["ok"] + r["throttled_429"] + sum(r["other_statuses"].values())
        r["requests_total"] = total
        log(f"overload: {overload_clients} clients, concurrency {overload_concurrency}: {r['throttled_429']} "
            f"of {total} answered 429 ({r['throttled_429_with_retry_after']} with Retry-After "
            f"{r['retry_after_values']}; p99 {r['p99_429_ms']} ms); accepted {r['requests_per_s']:.2f} req/s, "
            f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; other {r['other_statuses']}")
    finally:
        server.stop()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="per level")
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--overload-clients", type=int, default=64)
    ap.add_argument("--overload-concurrency", type=int, default=16)
    ap.add_argument("--size", default="1200x860", help="photo size (about 1 MP)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results = measure(args.seconds, args.levels, args.overload_clients, args.overload_concurrency, args.size)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
