"""`imagegate backfill` against the real broker and Redis: file and Redis sources, the backfill
mark, its own topic, and a run killed with SIGKILL and resumed within the at-least-once bound."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import redis

from producer_tools.backfill import DUPLICATE_BOUND
from tests.harness import REPO, read_all

pytestmark = pytest.mark.integration


def cli(env: dict[str, str], *args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "producer_tools.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def summary(r: subprocess.CompletedProcess) -> dict:
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_backfill_from_files_marks_events_and_refuses_bad_rows(pipeline, tmp_path):
    s = pipeline.settings
    jsonl = tmp_path / "catalogue.jsonl"
    jsonl.write_text("\n".join([
        json.dumps({"image_id": "j1", "url": "https://cdn.example.com/j1.jpg", "listing_id": "L1", "role": "gallery",
                    "policy": "lenient", "extra": "ignored"}),
        json.dumps({"image_id": "j2", "url": "https://cdn.example.com/j2.jpg"}),
        "{not json",
        json.dumps({"image_id": "j3"}),  # no url
    ]) + "\n")
    r = cli(pipeline.env, "backfill", "--from-file", str(jsonl), "--checkpoint", str(tmp_path / "cp1.json"))
    assert r.returncode == 1, r.stderr  # bad rows: partial
    assert "line 3: not JSON" in r.stderr and "line 4" in r.stderr and "url" in r.stderr
    assert summary(r)["published"] == 2 and summary(r)["skipped"] == {"invalid": 2}
    events = sorted(read_all(s, s.topic_in), key=lambda m: m.key())
    bodies = [json.loads(m.value()) for m in events]
    assert [b["image_id"] for b in bodies] == ["j1", "j2"]
    assert all(b["trigger"] == "backfill" for b in bodies)
    assert all(dict(m.headers())["imagegate_trigger"] == b"backfill" for m in events)
    assert bodies[0]["listing_id"] == "L1" and bodies[0]["role"] == "gallery" and bodies[0]["policy"] == "lenient"

    # CSV, on its own topic (IMAGEGATE_TOPIC_BACKFILL): live uploads' topic gets nothing more
    csv = tmp_path / "catalogue.csv"
    csv.write_text("image_id,url,seller_id\nc1,https://cdn.example.com/c1.jpg,S1\nc2,https://cdn.example.com/c2.jpg,\n")
    env = {**pipeline.env, "IMAGEGATE_TOPIC_BACKFILL": f"{s.topic_in}.backfill"}
    assert cli(env, "topics").returncode == 0
    r = cli(env, "backfill", "--from-file", str(csv), "--checkpoint", str(tmp_path / "cp2.json"))
    assert r.returncode == 0, r.stderr
    side = [json.loads(m.value()) for m in read_all(s, f"{s.topic_in}.backfill")]
    assert sorted((b["image_id"], b.get("seller_id")) for b in side) == [("c1", "S1"), ("c2", None)]
    assert len(read_all(s, s.topic_in)) == 2
    again = cli(env, "backfill", "--from-file", str(csv), "--checkpoint", str(tmp_path / "cp2.json"))
    assert again.returncode == 0 and "already complete" in again.stderr
    other = cli(env, "backfill", "--from-file", str(jsonl), "--checkpoint", str(tmp_path / "cp2.json"))
    assert other.returncode == 2 and "belongs to another backfill" in other.stderr
    missing = cli(env, "backfill", "--from-file", str(tmp_path / "nope.csv"), "--checkpoint", str(tmp_path / "cp3.json"))
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr


def result(image_id: str, model_version: str, policy_version: str, source_url: str | None = "default", **extra) -> str:
    body = {"event_id": f"out-{image_id}", "source_event_id": f"in-{image_id}", "image_id": image_id,
            "listing_id": f"L-{image_id}", "seller_id": "S1", "role": "main", "score": 70.0, "decision": "accept",
            "model": {"name": "imagegate-quality", "version": model_version},
            "policy": {"name": "strict", "version": policy_version}, **extra}
    if source_url is not None:
        body["source_url"] = f"https://cdn.example.com/{image_id}.jpg" if source_url == "default" else source_url
    return json.dumps(body)


def test_backfill_from_redis_selects_results_of_other_versions(pipeline, tmp_path, plumbing_model):
    s = pipeline.settings
    r = redis.Redis.from_url(s.redis_url)
    current_policy = json.loads(s.policy_file.read_text())["version"]
    r.set("imagegate:image:old-model-1", result("old-model-1", "0.0.0-old", current_policy))
    r.set("imagegate:image:old-model-2", result("old-model-2", "0.0.0-old", current_policy))
    r.set("imagegate:image:old-policy", result("old-policy", "0.0.0-random", "2020.1.1"))
    r.set("imagegate:image:current", result("current", "0.0.0-random", current_policy))
    r.set("imagegate:image:no-url", result("no-url", "0.0.0-old", current_policy, source_url=None))
    r.set("imagegate:image:garbage", b"\xff not json")
    r.set(f"imagegate:v0.0.0-old:{current_policy}:sha256:{'a' * 64}", "{}")  # a content key: never selected

    # running versions read from the model file and the policy file, as `imagegate score` loads them
    out = cli(pipeline.env, "backfill", "--from-redis", "--model", str(plumbing_model), "--checkpoint", str(tmp_path / "cp.json"))
    assert out.returncode == 1, out.stderr  # one unreadable record
    assert "not scored by model 0.0.0-random" in out.stderr
    assert summary(out)["skipped"] == {"up to date": 1, "no source_url": 1, "unreadable": 1}
    bodies = {json.loads(m.value())["image_id"]: json.loads(m.value()) for m in read_all(s, s.topic_in)}
    assert set(bodies) == {"old-model-1", "old-model-2", "old-policy"}
    assert bodies["old-policy"]["url"] == "https://cdn.example.com/old-policy.jpg"
    assert bodies["old-policy"]["policy"] == "strict" and bodies["old-policy"]["listing_id"] == "L-old-policy"
    assert all(b["trigger"] == "backfill" for b in bodies.values())

    down = cli({**pipeline.env, "IMAGEGATE_REDIS_URL": "redis://127.0.0.1:1/0"}, "backfill", "--from-redis",
               "--model-version", "9.9.9", "--checkpoint", str(tmp_path / "down.json"))
    assert down.returncode == 1 and "cannot read the source" in down.stderr and "Traceback" not in down.stderr
    assert not (tmp_path / "down.json").exists()

    # explicit versions: now "current" is the stale one
    r.delete("imagegate:image:garbage")
    nowhere = cli(pipeline.env, "backfill", "--from-redis", "--model-version", "9.9.9", "--topic", f"{s.topic_in}.v9",
                  "--checkpoint", str(tmp_path / "cp9.json"))
    assert nowhere.returncode == 2 and f"topic {s.topic_in}.v9 does not exist" in nowhere.stderr
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(s.kafka_common())
    admin.create_topics([NewTopic(f"{s.topic_in}.v9", 2, 1)])[f"{s.topic_in}.v9"].result()
    flags = cli(pipeline.env, "backfill", "--from-redis", "--model-version", "9.9.9", "--policy-version", current_policy,
                "--topic", f"{s.topic_in}.v9", "--checkpoint", str(tmp_path / "cp9.json"), "--limit", "3")
    assert flags.returncode == 0, flags.stderr
    assert summary(flags)["published"] == 3 and summary(flags)["skipped"] == {"no source_url": 1, "over --limit": 1}


def test_backfill_killed_and_resumed_without_duplicates_beyond_the_bound(pipeline, tmp_path):
    s = pipeline.settings
    n = 3000
    src = tmp_path / "big.csv"
    src.write_text("image_id,url\n" + "".join(f"b{i:05d},https://cdn.example.com/b{i}.jpg\n" for i in range(n)))
    cp = tmp_path / "cp.json"
    args = [sys.executable, "-m", "producer_tools.cli", "backfill", "--from-file", str(src), "--checkpoint", str(cp)]
    proc = subprocess.Popen(args + ["--rate", "400"], cwd=REPO, env=pipeline.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    done_at_kill = 0
    for _ in range(600):
        if cp.exists() and (done_at_kill := json.loads(cp.read_text())["done"]) >= 600:
            break
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    done_at_kill = json.loads(cp.read_text())["done"]
    assert 0 < done_at_kill < n, "the kill must land mid-way"
    before = len(read_all(s, s.topic_in))

    resumed = cli(pipeline.env, "backfill", "--from-file", str(src), "--checkpoint", str(cp))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming backfill" in resumed.stderr and summary(resumed)["resumed_at"] == done_at_kill
    assert summary(resumed)["published"] == n - done_at_kill

    events = read_all(s, s.topic_in)
    per_image = Counter(m.key() for m in events)
    assert set(per_image) == {f"b{i:05d}".encode() for i in range(n)}  # nothing lost
    duplicates = len(events) - n
    assert duplicates == before - done_at_kill  # exactly what was sent after the last checkpoint
    assert duplicates <= DUPLICATE_BOUND
    ids: dict[bytes, set[str]] = {}
    for m in events:
        ids.setdefault(m.key(), set()).add(json.loads(m.value())["event_id"])
    assert all(len(v) == 1 for v in ids.values())  # a duplicate carries the same event_id: recognisable
    print(f"killed at checkpoint {done_at_kill}, {before} in topic, {duplicates} duplicates (bound {DUPLICATE_BOUND})")


def test_backfill_resumed_run_ends_complete_and_a_third_run_publishes_nothing(pipeline, tmp_path):
    """The resumed run counts its acknowledgements on top of the checkpoint's: it ends at
    "100 of 100 done", so running the same command once more finds nothing to do."""
    s = pipeline.settings
    n = 100
    src = tmp_path / "hundred.csv"
    src.write_text("image_id,url\n" + "".join(f"r{i:03d},https://cdn.example.com/r{i}.jpg\n" for i in range(n)))
    cp = tmp_path / "cp.json"
    args = [sys.executable, "-m", "producer_tools.cli", "backfill", "--from-file", str(src), "--checkpoint", str(cp)]
    proc = subprocess.Popen(args + ["--rate", "20"], cwd=REPO, env=pipeline.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for _ in range(1200):  # bounded: 60 s
        if cp.exists() and json.loads(cp.read_text())["done"] >= 10:
            break
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    at_kill = json.loads(cp.read_text())["done"]
    assert 0 < at_kill < n, "the kill must land mid-way"

    resumed = cli(pipeline.env, "backfill", "--from-file", str(src), "--checkpoint", str(cp))
    assert resumed.returncode == 0, resumed.stderr
    assert summary(resumed)["resumed_at"] == at_kill
    state = json.loads(cp.read_text())
    assert (state["done"], state["total"]) == (n, n), f"checkpoint after the resumed run: {state['done']} of {state['total']} done"
    in_topic = len(read_all(s, s.topic_in))

    third = cli(pipeline.env, "backfill", "--from-file", str(src), "--checkpoint", str(cp))
    assert third.returncode == 0 and "already complete" in third.stderr, third.stderr
    assert len(read_all(s, s.topic_in)) == in_topic  # nothing published again


def test_progress_bar_on_a_terminal_only(pipeline, tmp_path):
    """stderr on a pseudo-terminal gets a live bar; captured stderr (a pipe) gets only the summary."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    src = tmp_path / "few.csv"
    src.write_text("image_id,url\n" + "".join(f"p{i},https://cdn.example.com/p{i}.jpg\n" for i in range(50)))
    piped = cli(pipeline.env, "backfill", "--from-file", str(src), "--checkpoint", str(tmp_path / "a.json"), "--rate", "100")
    assert piped.returncode == 0 and "backfill:" not in piped.stderr and "img/s" not in piped.stderr
    # --rate paces sends (item n leaves at n/rate s): a broken limiter would exceed it, a slow machine cannot
    assert summary(piped)["events_per_s"] <= 105

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    proc = subprocess.Popen([sys.executable, "-m", "producer_tools.cli", "backfill", "--from-file", str(src),
                             "--checkpoint", str(tmp_path / "b.json"), "--rate", "100"],
                            cwd=REPO, env=pipeline.env, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(120) == 0
    assert b"backfill:" in seen and b"/50" in seen and b"img/s" in seen, seen[-500:]
