"""`make demo`: the whole path on a local stack, with the shipped model.

Starts the local Kafka + Redis (unless already running), creates topics, writes a few
sample photos of visibly different quality (scikit-image's bundled sample photos, plus
blur/noise/darkness/JPEG damage/overlay/downscale applied here), serves them over HTTP on
loopback, starts a real worker, publishes one `image_uploaded` per photo, waits for the
`image_scored` events and prints them as a table. Stops what it started.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]
STACK = REPO / "deploy" / "local" / "stack"
# Sample photos are 300-512 px: the 'lenient' profile's resolution floor (400 px main) lets
# the quality model, not the size check, decide most rows.
PROFILE = "lenient"


def sample_images(out: Path) -> list[tuple[str, str]]:
    """(file name, what was done to it). Sources ship inside the scikit-image wheel."""
    import skimage.data as data

    rng = np.random.default_rng(7)
    coffee = Image.fromarray(data.coffee())
    astronaut = Image.fromarray(data.astronaut())
    rocket = Image.fromarray(data.rocket())
    chelsea = Image.fromarray(data.chelsea())

    def jpeg(img: Image.Image, q: int) -> bytes:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=q)
        return buf.getvalue()

    noisy = np.asarray(astronaut, dtype=np.float32) + rng.normal(0, 40, (512, 512, 3))
    overlay = rocket.copy()
    draw = ImageDraw.Draw(overlay)
    for y in range(20, 420, 60):
        draw.text((30, y), "SALE  -50%  www.example-shop.test  SALE  -50%", fill=(255, 255, 255))
    samples = {
        "coffee.jpg": (jpeg(coffee, 95), "original"),
        "astronaut.jpg": (jpeg(astronaut, 95), "original"),
        "coffee_blurry.jpg": (jpeg(coffee.filter(ImageFilter.GaussianBlur(4)), 95), "Gaussian blur r=4"),
        "astronaut_noisy.jpg": (jpeg(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), 95), "sensor-like noise sd=40"),
        "rocket_dark.jpg": (jpeg(Image.eval(rocket, lambda v: int(v * 0.15)), 95), "exposure x0.15"),
        "chelsea_blocky.jpg": (jpeg(chelsea, 4), "JPEG quality 4"),
        "rocket_overlay.jpg": (jpeg(overlay, 95), "overlaid text"),
        "coffee_tiny.jpg": (jpeg(coffee.resize((150, 100), Image.Resampling.LANCZOS), 95), "downscaled to 150x100"),
    }
    for name, (blob, _) in samples.items():
        (out / name).write_bytes(blob)
    return [(name, what) for name, (_, what) in samples.items()]


def stack(*args: str) -> str:
    r = subprocess.run([str(STACK), *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"deploy/local/stack {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def stack_running() -> bool:
    return subprocess.run([str(STACK), "status"], capture_output=True).returncode == 0


def main() -> int:
    import model
    from consumer.config import load_settings
    from producer_tools import kafka_clients, serve
    from producer_tools.publish import make_event, publish

    kafka_clients.quiet_librdkafka()
    weights = Path(os.environ.get("IMAGEGATE_MODEL_PATH") or model.DEFAULT_WEIGHTS)
    if not weights.is_file():
        sys.exit(f"model weights missing: {weights} (see model/MODEL_CARD.md)")
    t_start = time.monotonic()
    started_stack = not stack_running()
    if started_stack:
        print("starting local Kafka + Redis (deploy/local/stack start) ...", flush=True)
        stack("start")
    env = dict(os.environ)
    env.update(line.split("=", 1) for line in stack("env").splitlines() if "=" in line)
    env.update({"IMAGEGATE_ALLOW_NETWORKS": '["127.0.0.0/8"]', "IMAGEGATE_METRICS_PORT": "0",
                "IMAGEGATE_LOG_LEVEL": "WARNING", "IMAGEGATE_MAX_BATCH_DELAY_MS": "20"})
    os.environ.update(env)
    settings = load_settings()
    kafka_clients.ensure_topics(settings)

    with tempfile.TemporaryDirectory(prefix="imagegate-demo-") as tmp:
        root = Path(tmp)
        samples = sample_images(root)
        server = serve.start(root)
        worker = subprocess.Popen([sys.executable, "-m", "consumer"], env=env, cwd=REPO)
        try:
            events = [make_event(f"{serve.base_url(server)}/{name}", image_id=Path(name).stem, policy=PROFILE)
                      for name, _ in samples]
            reader = kafka_clients.reader(settings)
            reader.subscribe([settings.topic_out])
            publish(kafka_clients.producer(settings), settings.topic_in, events)
            print(f"published {len(events)} image_uploaded events; waiting for image_scored ...", flush=True)
            results = collect(reader, {e.event_id for e in events}, timeout_s=180, worker=worker)
            reader.close()
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
            server.shutdown()
    if started_stack:
        stack("stop")
    by_event = {r["source_event_id"]: r for r in results}
    print_table([(name, what, by_event.get(e.event_id)) for (name, what), e in zip(samples, events)])
    print(f"\n{len(results)}/{len(events)} scored in {time.monotonic() - t_start:.1f}s "
          f"(model {results[0]['model']['name']} {results[0]['model']['version']}, "
          f"policy profile {results[0]['policy']['name']!r} {results[0]['policy']['version']})" if results else "no results")
    return 0 if len(results) == len(events) else 1


def collect(reader, wanted: set[str], timeout_s: float, worker) -> list[dict]:
    import json

    got: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    while wanted - set(got) and time.monotonic() < deadline and worker.poll() is None:
        for msg in reader.consume(100, 0.5):
            if msg.error():
                continue
            body = json.loads(msg.value())
            if body["source_event_id"] in wanted:
                got[body["source_event_id"]] = body
    return list(got.values())


def print_table(rows) -> None:
    print(f"\n{'image':<22} {'applied':<24} {'score':>5}  {'decision':<8} reasons")
    print("-" * 110)
    for name, what, body in rows:
        if body is None:
            print(f"{name:<22} {what:<24} {'-':>5}  {'MISSING':<8}")
            continue
        reasons = "; ".join(r["message"] for r in body["reasons"]) or "-"
        print(f"{name:<22} {what:<24} {body['score']:5.1f}  {body['decision']:<8} {reasons}")


if __name__ == "__main__":
    sys.exit(main())
