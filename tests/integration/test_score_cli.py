"""`imagegate score` must give the worker's own verdicts (plumbing model: values are meaningless,
equality is the point)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from producer_tools.publish import make_event
from tests.harness import REPO
from tests.images import encode, photo


def run_score(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "producer_tools.cli", "score", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_score_cli_formats_and_bad_files(tmp_path, plumbing_model):
    p = photo(320, 240)
    (tmp_path / "a.jpg").write_bytes(encode(p, quality=90))
    (tmp_path / "b.png").write_bytes(encode(p, "PNG"))
    (tmp_path / "c.webp").write_bytes(encode(p, "WEBP"))
    (tmp_path / "broken.jpg").write_bytes(encode(p, quality=90)[:400])  # truncated
    r = run_score(str(tmp_path), "--model", str(plumbing_model), "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    rows = {json.loads(line)["path"].rsplit("/", 1)[1]: json.loads(line) for line in r.stdout.splitlines()}
    assert set(rows) == {"a.jpg", "b.png", "c.webp", "broken.jpg"}
    assert rows["broken.jpg"]["decision"] == "reject" and rows["broken.jpg"]["reasons"][0]["code"] == "unreadable"
    assert all(0 <= rows[n]["score"] <= 100 and rows[n]["signals"]["width"] == 320 for n in ("a.jpg", "b.png", "c.webp"))
    table = run_score(str(tmp_path / "a.jpg"), "--model", str(plumbing_model))
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ["image", "score", "decision"]
    assert "a.jpg" in table.stdout


@pytest.mark.integration
def test_score_cli_matches_the_worker(pipeline, origin, images, plumbing_model):
    names = sorted(p.name for p in images.iterdir())
    r = run_score(str(images), "--model", str(plumbing_model), "--format", "jsonl", "--policy", "lenient")
    assert r.returncode == 0, r.stderr
    offline = {json.loads(line)["path"].rsplit("/", 1)[1]: json.loads(line) for line in r.stdout.splitlines()}
    w = pipeline.worker(IMAGEGATE_MAX_BATCH_SIZE="5").start()
    out = pipeline.collector()
    events = {make_event(f"{origin.url}/img/{n}", image_id=n, policy="lenient").event_id: n for n in names}
    pipeline.publish([make_event(f"{origin.url}/img/{n}", image_id=n, policy="lenient", event_id=eid)
                      for eid, n in events.items()])
    assert out.wait_for(set(events), 120) == set(), w.log_tail()
    for body in out.scored:
        name = events[body["source_event_id"]]
        assert body["decision"] == offline[name]["decision"], name
        assert body["score"] == pytest.approx(offline[name]["score"], abs=0.01), name
        assert [x["code"] for x in body["reasons"]] == [x["code"] for x in offline[name]["reasons"]], name
    assert w.stop() == 0
