"""`imagegate dlq list | replay` against the real broker: filters, summary, dry run, delivery confirmed
before the group commits, truncated records skipped, a broker that refuses a record."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.harness import REPO

pytestmark = pytest.mark.integration


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "producer_tools.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)


def event(image_id: str, **extra) -> bytes:
    return json.dumps({"event_id": f"ev-{image_id}", "image_id": image_id,
                       "url": f"https://cdn.example.com/{image_id}.jpg", **extra}).encode()


def dead_letter(settings, records: list[tuple[bytes, str, str]], extra_headers=None) -> None:
    """Write DLQ records as the worker does: original value and key, imagegate_* headers."""
    from producer_tools.kafka_clients import producer

    p = producer(settings)
    for i, (value, stage, error) in enumerate(records):
        headers = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                   ("imagegate_error", error.encode()), ("imagegate_error_stage", stage.encode()),
                   ("imagegate_source_topic", settings.topic_in.encode()),
                   ("imagegate_source_partition", b"0"), ("imagegate_source_offset", str(i).encode()),
                   ("imagegate_failed_at", b"2026-11-29T10:00:00+00:00"), ("imagegate_attempts", b"1")]
        headers += (extra_headers or {}).get(i, [])
        p.produce(settings.topic_dlq, value, f"k{i}".encode(), partition=0, headers=headers)
    assert p.flush(30) == 0


def read_all(settings, topic: str) -> list:
    from producer_tools.kafka_clients import reader

    c = reader(settings)
    c.subscribe([topic])
    out, idle = [], 0
    while idle < 6:
        msgs = c.consume(500, 0.5)
        idle = idle + 1 if not msgs else 0
        out += [m for m in msgs if not m.error()]
    c.close()
    return out


def test_replay_twice_does_not_crash_and_replays_once(pipeline):
    """The reported crash: `dlq replay` raised KafkaException _NO_OFFSET on commit.
    A second replay of the same DLQ must find nothing new (and exit 0, no traceback)."""
    s = pipeline.settings
    dead_letter(s, [(event(f"i{n}"), "fetch_decode", "fetch failed: HTTP 503") for n in range(5)])
    first = cli(pipeline.env, "dlq", "replay")
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    second = cli(pipeline.env, "dlq", "replay")
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr
    replayed = read_all(s, s.topic_in)
    assert sorted(m.key() for m in replayed) == [f"k{n}".encode() for n in range(5)]


def test_replay_of_an_empty_dlq(pipeline):
    r = cli(pipeline.env, "dlq", "replay")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
