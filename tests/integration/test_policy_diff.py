"""`imagegate policy diff` and `imagegate report` on a live image_scored topic (real Kafka).

The records are image_scored events as the worker writes them (built with the contract's own
model and judged by the bundled policy), published to a test topic: the what-if must re-judge
their stored signals under a candidate file and count exactly the images that change.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from consumer.config import DEFAULT_POLICY_FILE
from consumer.events import ImageScored, ModelRef, ReasonCode, now_utc, scored_event_id
from consumer.policy import Policy
from producer_tools.kafka_clients import producer
from tests.harness import REPO
from tests.images import encode, photo

pytestmark = pytest.mark.integration
POLICY = Policy.from_file(DEFAULT_POLICY_FILE)
MAIN = {"quality": 80.0, "width": 1200.0, "height": 1200.0, "blur": 0.05, "noise": 0.05, "compression": 0.05,
        "underexposure": 0.05, "overexposure": 0.05, "overlay": 0.05, "contrast": 0.2, "background_white": 1.0,
        "product_fill": 0.9, "border": 0.0, "product_cropped": 0.0}


def scored(i: int, signals: dict[str, float], role: str = "main") -> bytes:
    if signals:
        v = POLICY.judge(signals, None, role)
    else:
        v = POLICY.reject(None, ReasonCode.FETCH_FAILED, "HTTP 404", role=role)
    return ImageScored(event_id=scored_event_id(f"e{i}", "1", v.policy), source_event_id=f"e{i}", image_id=f"img-{i}", role=role,
                       score=v.score, decision=v.decision, reasons=v.reasons, signals=signals,
                       model=ModelRef(name="imagegate-quality", version="1"), policy=v.policy, cached=False,
                       scored_at=now_utc()).model_dump_json().encode()


def publish(settings, records: list[tuple[int, bytes]]) -> None:
    p = producer(settings)
    for i, value in records:
        p.produce(settings.topic_out, value, f"img-{i}".encode())
    assert p.flush(30) == 0


def cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "producer_tools.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_policy_diff_and_report_on_a_live_topic(pipeline, tmp_path):
    s = pipeline.settings
    # Older results, outside --last 30: each would move under the new file, so counting them is a bug.
    publish(s, [(i, scored(i, {**MAIN, "product_fill": 0.7})) for i in range(100, 110)])
    time.sleep(0.05)  # broker timestamps order "older" before "newer"
    fills = [0.9, 0.8, 0.7, 0.6, 0.5, 0.3]  # main_image: 0.85+ accept, 0.4-0.85 demote, < 0.4 reject
    recent = [(i, {**MAIN, "product_fill": fills[i % len(fills)]}) for i in range(28)]
    recent += [(28, {}), (29, {**MAIN, "product_fill": 0.7, "blur": 0.7})]  # fetch failed; fill AND blurry
    publish(s, [(i, scored(i, sig)) for i, sig in recent])

    new = json.loads(DEFAULT_POLICY_FILE.read_text())
    new["version"] = "candidate"
    new["profiles"]["main_image"]["measures"]["product_fill"] = {"demote": 0.65, "reject": 0.4}
    new_file = tmp_path / "candidate.json"
    new_file.write_text(json.dumps(new))

    r = cli(pipeline.env, "policy", "diff", "--policy-file", str(new_file), "--last", "30", "--report", str(tmp_path / "movers.html"))
    assert r.returncode == 0, r.stderr
    # fills 0.8 and 0.7 (nothing else wrong) move demote -> accept; the blurry one stays demoted.
    expected_moves = sum(1 for i, sig in recent if sig and sig["product_fill"] in (0.8, 0.7) and sig["blur"] < 0.5)
    assert expected_moves == 10
    assert f"30 stored results re-judged under policy candidate: {expected_moves} change decision" in r.stdout
    assert "(1 decided before scoring, unchanged)" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.startswith("demote "))
    still_demoted = sum(1 for _, sig in recent if sig and sig["product_fill"] in (0.6, 0.5)) + 1  # + the blurry one
    assert [int(x) for x in row.split()[1:]] == [expected_moves, still_demoted, 0]
    removed = sum(1 for _, sig in recent if sig and sig["product_fill"] in (0.8, 0.7))  # the blurry one too
    assert re.search(rf"^product_too_small\s+0\s+{removed}$", r.stdout, re.M)
    assert f"demote -> accept: {expected_moves}" in r.stdout
    assert len(re.findall(r"^  img-\d+ \(main_image\): was product_too_small; now no reasons$", r.stdout, re.M)) == 3
    page = (tmp_path / "movers.html").read_text()
    assert page.count('<div class="card ') == expected_moves and "was demote (product_too_small)" in page

    shots = tmp_path / "published"
    shots.mkdir()
    for name in ("img-29", "img-5", "img-100"):  # as `imagegate publish DIR` names image ids: the file stem
        (shots / f"{name}.jpg").write_bytes(encode(photo(320, 240), quality=85))
    r = cli(pipeline.env, "report", "--last", "30", "--out", str(tmp_path / "review.html"), "--images", str(shots))
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "review.html").read_text()
    assert page.count('<div class="card ') == 30 and "img-100" not in page and "img-29" in page
    assert page.count('src="data:image/jpeg;base64,') == 2  # img-29 and img-5; img-100 is not among the last 30


def test_policy_diff_refuses_unclear_requests(pipeline, tmp_path):
    r = cli(pipeline.env, "policy", "diff", "--policy-file", str(DEFAULT_POLICY_FILE))
    assert r.returncode == 2 and "either --last N" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "x", "profiles": {"default": {"accept_score": 50}}}')
    r = cli(pipeline.env, "policy", "diff", "--policy-file", str(bad), "--last", "5")
    assert r.returncode == 1 and "profiles.default.reject_score: Field required" in r.stderr
