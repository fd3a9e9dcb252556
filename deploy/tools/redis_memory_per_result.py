"""Measure Redis memory per cached result, for sizing (docs/production.md "Redis memory").

Starts a private redis-server (Debian's, as the local stack uses) on a Unix socket, writes N
content keys and N latest-image keys shaped exactly like the worker's (key names from
consumer.cache, values from real `imagegate score` output, TTL set), and prints used_memory
per key. Prints figures; asserts nothing.

    .venv/bin/imagegate score PHOTOS '*.jpg' --format jsonl > /tmp/scored.jsonl
    .venv/bin/python deploy/tools/redis_memory_per_result.py /tmp/scored.jsonl [--n 20000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import redis

from consumer.cache import content_key, image_key
from consumer.events import ImageScored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scored", type=Path, help="JSON lines from `imagegate score --format jsonl`")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--ttl", type=int, default=30 * 24 * 3600)
    args = ap.parse_args()
    rows = [json.loads(line) for line in args.scored.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if not r.get("error")]
    model, policy = {"name": "imagegate-quality", "version": "1.1.0"}, {"name": "default", "version": "2026.11.1"}
    with tempfile.TemporaryDirectory() as d:
        sock = Path(d) / "redis.sock"
        proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL)
        try:
            for _ in range(100):
                if sock.exists():
                    break
                time.sleep(0.05)
            r = redis.Redis(unix_socket_path=str(sock))
            used = lambda: r.info("memory")["used_memory"]  # noqa: E731
            base, pipe = used(), r.pipeline(transaction=False)
            sizes = {"content": 0, "image": 0}
            for i in range(args.n):
                row = rows[i % len(rows)]
                sha = hashlib.sha256(str(i).encode()).hexdigest()
                content = json.dumps({"content_sha256": sha, "signals": row["signals"], "model": model})
                sizes["content"] += len(content)
                pipe.set(content_key(model["version"], policy["version"], sha), content, ex=args.ttl)
                if i % 1000 == 999:
                    pipe.execute()
            pipe.execute()
            after_content = used()
            for i in range(args.n):
                row = rows[i % len(rows)]
                body = ImageScored(event_id=str(uuid.uuid4()), source_event_id=str(uuid.uuid4()),
                                   image_id=f"img-{uuid.uuid4().hex[:16]}", listing_id="listing-123456789",
                                   seller_id="seller-987654", content_sha256=hashlib.sha256(str(i).encode()).hexdigest(),
                                   score=row["score"], decision=row["decision"], reasons=row["reasons"],
                                   signals=row["signals"], model=model, policy=policy, cached=False,
                                   scored_at=datetime.now(timezone.utc),
                                   timings={"fetch_ms": 120.5, "decode_ms": 8.2, "queue_ms": 3.1,
                                            "inference_ms": 160.4, "total_ms": 300.2}).model_dump_json()
                sizes["image"] += len(body)
                pipe.set(image_key(f"img-{i}"), body, ex=args.ttl)
                if i % 1000 == 999:
                    pipe.execute()
            pipe.execute()
            after_image = used()
            version = r.info("server")["redis_version"]
        finally:
            proc.terminate()
            proc.wait(10)
    n = args.n
    print(f"redis {version}, {n} keys each, TTL {args.ttl} s")
    print(f"content key: {(after_content - base) / n:.0f} B/key (value {sizes['content'] / n:.0f} B)")
    print(f"image key:   {(after_image - after_content) / n:.0f} B/key (value {sizes['image'] / n:.0f} B)")
    print(f"per new distinct image: {(after_image - base) / n:.0f} B")


if __name__ == "__main__":
    main()
