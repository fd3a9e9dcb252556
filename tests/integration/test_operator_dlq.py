"""`imagegate dlq list | replay` against the real broker: filters, summary, dry run, delivery confirmed
before the group commits, truncated records skipped, a broker that refuses a record."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.harness import REPO, read_all

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
    assert "Traceback" not in r.stderr and "is empty: nothing to replay" in r.stderr
    listed = cli(pipeline.env, "dlq", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == {"summary": [], "total": 0}


def committed(settings, group: str, topic: str, partition: int = 0) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**settings.kafka_common(), "group.id": group})
    try:
        return c.committed([TopicPartition(topic, partition)], timeout=30)[0].offset
    finally:
        c.close()


MIXED = [
    (event("a"), "fetch_decode", "fetch failed: HTTP 503 from https://cdn.example.com/a.jpg"),
    (event("b"), "fetch_decode", "fetch failed: HTTP 502 from https://cdn.example.com/b.jpg"),
    (b"not json {", "validate", "event is not JSON: Expecting value at line 1 column 1"),
    (event("c"), "inference", "inference failed: CUDA out of memory"),
    (event("d")[:40], "validate", "event is not JSON: Unterminated string at line 1 column 30"),
]
TRUNCATED = {4: [("imagegate_truncated", b"true"), ("imagegate_original_size", b"2000000"),
                 ("imagegate_original_sha256", b"ab" * 32)]}


def test_list_filters_and_summary(pipeline):
    s = pipeline.settings
    dead_letter(s, MIXED, TRUNCATED)
    r = cli(pipeline.env, "dlq", "list", "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    records, summary = lines[:-1], lines[-1]
    assert [x["offset"] for x in records] == [0, 1, 2, 3, 4]
    assert records[4]["truncated"] is True and records[0]["truncated"] is False
    # 503 and 502 from different URLs are one kind of error; the two validate errors differ in kind
    assert summary["total"] == 5
    assert {(x["stage"], x["count"]) for x in summary["summary"]} == {("fetch_decode", 2), ("validate", 1), ("inference", 1)}
    by_stage = cli(pipeline.env, "dlq", "list", "--json", "--stage", "validate")
    assert [json.loads(x)["offset"] for x in by_stage.stdout.splitlines()[:-1]] == [2, 4]
    by_error = cli(pipeline.env, "dlq", "list", "--json", "--error", "cuda")
    assert [json.loads(x)["offset"] for x in by_error.stdout.splitlines()[:-1]] == [3]
    future = cli(pipeline.env, "dlq", "list", "--json", "--since", "2026-11-29T11:00:00Z")
    assert json.loads(future.stdout.splitlines()[-1])["total"] == 0
    past = cli(pipeline.env, "dlq", "list", "--json", "--since", "2026-11-29T09:00:00Z")
    assert json.loads(past.stdout.splitlines()[-1])["total"] == 5
    table = cli(pipeline.env, "dlq", "list", "--summary")
    assert table.returncode == 0 and "5 records" in table.stdout and "fetch_decode" in table.stdout
    bad = cli(pipeline.env, "dlq", "list", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr


def test_replay_filters_dry_run_truncated_and_marks(pipeline):
    s = pipeline.settings
    dead_letter(s, MIXED, TRUNCATED)
    group = f"{s.topic_dlq}.replay"
    dry = cli(pipeline.env, "dlq", "replay", "--group", group, "--stage", "fetch_decode", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would replay:") == 2 and "would replay 2" in dry.stderr
    assert committed(s, group, s.topic_dlq) < 0  # a dry run commits nothing

    only_fetch = cli(pipeline.env, "dlq", "replay", "--group", group, "--stage", "fetch_decode")
    assert only_fetch.returncode == 0, only_fetch.stderr
    assert "replayed 2" in only_fetch.stderr and "3 (filtered)" in only_fetch.stderr
    # offsets 0 and 1 replayed; 2 was left out by the filter, so the commit stops there
    assert committed(s, group, s.topic_dlq) == 2

    rest = cli(pipeline.env, "dlq", "replay", "--group", group)
    assert rest.returncode == 0, rest.stderr
    assert "replayed 2" in rest.stderr and "skipped 1 (truncated)" in rest.stderr
    assert "skipped (truncated): " + f"{s.topic_dlq}:0:4" in rest.stdout and "2000000" in rest.stdout
    assert committed(s, group, s.topic_dlq) == 5

    out = sorted(read_all(s, s.topic_in), key=lambda m: m.key())
    assert [m.key() for m in out] == [b"k0", b"k1", b"k2", b"k3"]  # not the truncated k4
    bodies = [m.value() for m in out]
    assert json.loads(bodies[0])["trigger"] == "replay" and json.loads(bodies[3])["trigger"] == "replay"
    assert bodies[2] == b"not json {"  # not JSON: replayed byte for byte
    for m, where in zip(out, [0, 1, 2, 3]):
        h = dict(m.headers())
        assert h["imagegate_replay_of"] == f"{s.topic_dlq}:0:{where}".encode()
        assert "imagegate_error" not in h and h["traceparent"].startswith(b"00-")
    again = cli(pipeline.env, "dlq", "replay", "--group", group)
    assert again.returncode == 0 and "fully replayed" in again.stderr


def test_replay_a_record_the_broker_refuses(pipeline):
    """The target topic takes records up to 2,000 bytes; one DLQ record is 5,000. It is reported as
    failed, the command exits 1, the commit stops before it, and the records around it get through."""
    from confluent_kafka.admin import AdminClient, NewTopic

    s = pipeline.settings
    target = f"{s.topic_in}.small"
    admin = AdminClient(s.kafka_common())
    admin.create_topics([NewTopic(target, 1, 1, config={"max.message.bytes": "2000"})])[target].result()
    dead_letter(s, [(event("ok1"), "inference", "x"), (event("ok2"), "inference", "x"),
                    (event("huge", note="z" * 5000), "inference", "x"), (event("ok3"), "inference", "x")])
    group = f"{s.topic_dlq}.replay"
    r = cli(pipeline.env, "dlq", "replay", "--group", group, "--to", target)
    assert r.returncode == 1, r.stderr
    assert "failed 1" in r.stderr and f"failed: {s.topic_dlq}:0:2 image k2" in r.stdout
    assert "MSG_SIZE_TOO_LARGE" in r.stdout and "Traceback" not in r.stderr
    assert committed(s, group, s.topic_dlq) == 2
    assert sorted(m.key() for m in read_all(s, target)) == [b"k0", b"k1", b"k3"]


def test_replay_goes_back_to_the_input_topic_it_came_from(pipeline):
    """A dead-lettered backfill event goes back to the backfill topic (not ahead of live uploads);
    a source-topic header naming anything else cannot steer the replay there."""
    from producer_tools.kafka_clients import ensure_topics

    s = pipeline.settings
    env = {**pipeline.env, "IMAGEGATE_TOPIC_BACKFILL": f"{s.topic_in}.backfill"}
    ensure_topics(s.model_copy(update={"topic_backfill": f"{s.topic_in}.backfill"}))
    dead_letter(s, [(event("live"), "inference", "x"), (event("bf", trigger="backfill"), "inference", "x"),
                    (event("odd"), "inference", "x")],
                {1: [("imagegate_source_topic", f"{s.topic_in}.backfill".encode())],
                 2: [("imagegate_source_topic", b"somebody.elses.topic")]})
    r = cli(env, "dlq", "replay")
    assert r.returncode == 0, r.stderr
    assert sorted(m.key() for m in read_all(s, s.topic_in)) == [b"k0", b"k2"]
    back = read_all(s, f"{s.topic_in}.backfill")
    assert [m.key() for m in back] == [b"k1"] and json.loads(back[0].value())["trigger"] == "replay"


def test_replay_whose_acknowledgements_never_arrive_commits_nothing(pipeline):
    """The target topic does not exist and the broker creates none (auto.create.topics.enable=false),
    so no acknowledgement arrives within --flush-timeout. The records are reported as failed and the
    group's offset stays where an earlier, acknowledged replay left it: a later replay sends them."""
    s = pipeline.settings
    group = f"{s.topic_dlq}.replay"
    dead_letter(s, [(event("first"), "inference", "x"), (event("second"), "inference", "x")])
    ok = cli(pipeline.env, "dlq", "replay", "--group", group)
    assert ok.returncode == 0, ok.stderr
    assert committed(s, group, s.topic_dlq) == 2
    dead_letter(s, [(event("third"), "inference", "x"), (event("fourth"), "inference", "x")])

    lost = f"{s.topic_in}.nowhere"
    r = cli(pipeline.env, "dlq", "replay", "--group", group, "--to", lost, "--flush-timeout", "2")
    assert committed(s, group, s.topic_dlq) == 2, f"records never acknowledged were committed past:\n{r.stderr}"
    assert r.returncode == 1, r.stderr
    assert "failed 2" in r.stderr and "not acknowledged by the broker within 2s" in r.stdout, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr

    again = cli(pipeline.env, "dlq", "replay", "--group", group)
    assert again.returncode == 0, again.stderr
    assert committed(s, group, s.topic_dlq) == 4
    # k0, k1 from the first replay; the two the failed replay held back come again (their keys restart at k0)
    assert sorted(m.key() for m in read_all(s, s.topic_in)) == [b"k0", b"k0", b"k1", b"k1"]
