"""Build and publish `image_uploaded` events for URLs, files and folders.

Local files reach the worker either as `file://` URLs (the worker needs the same
`IMAGEGATE_FILE_ROOT`) or through a small HTTP server (`imagegate serve`), which is how
the demo and tests feed a worker without the internet.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import quote

from confluent_kafka import Producer

from consumer.events import ImageUploaded, now_utc

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def make_event(url: str, image_id: str | None = None, *, policy: str | None = None, role: str = "main",
               listing_id: str | None = None, seller_id: str | None = None, content_sha256: str | None = None,
               event_id: str | None = None) -> ImageUploaded:
    return ImageUploaded(
        event_id=event_id or str(uuid.uuid4()),
        image_id=image_id or f"img-{uuid.uuid4().hex[:12]}",
        url=url, policy=policy, role=role, listing_id=listing_id, seller_id=seller_id,
        content_sha256=content_sha256, occurred_at=now_utc(),
    )


def expand_files(targets: Iterable[str | Path]) -> Iterator[Path]:
    """Files as given; folders recursively (image suffixes only), sorted for repeatability."""
    for t in targets:
        p = Path(t)
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            yield p
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")


def url_for(path: Path, via: str, root: Path, base_url: str | None = None) -> str:
    rel = path.resolve().relative_to(root.resolve())
    if via == "file":
        return "file://" + quote(str(root.resolve() / rel))
    assert base_url, "--via http needs a base URL (the imagegate serve address)"
    return base_url.rstrip("/") + "/" + quote(str(rel))


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def publish(producer: Producer, topic: str, events: Iterable[ImageUploaded], headers: list[tuple[str, bytes]] | None = None,
            on_sent: Callable[[int], None] = lambda n: None) -> int:
    """Produce events keyed by image_id; waits until the broker acknowledged all of them."""
    errors: list[str] = []

    def report(err, _msg):
        if err is not None:
            errors.append(str(err))

    n = 0
    for ev in events:
        value = json.dumps(ev.model_dump(mode="json", exclude_none=True)).encode()
        while True:
            try:
                producer.produce(topic, value, ev.image_id.encode(), headers=headers, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        n += 1
        on_sent(1)
    remaining = producer.flush(60)
    if remaining or errors:
        # refused ones reach `errors`, unanswered ones stay in the queue: both are not delivered
        raise RuntimeError(f"{remaining + len(errors)} of {n} events not delivered; errors: {errors[:3]}")
    return n
