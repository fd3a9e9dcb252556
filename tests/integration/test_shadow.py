"""Shadow models on the real stack: the default's output is untouched, the candidate's verdicts
go only to the shadow topic, and the metrics and `imagegate shadow report` count every event.

Both models are `model.testing.write_random_model` (RANDOM weights, different seeds): their
scores mean nothing; these tests check plumbing and counting, never quality.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from consumer.config import DEFAULT_POLICY_FILE
from producer_tools.kafka_clients import ensure_topics
from producer_tools.publish import make_event
from tests.harness import REPO, read_all

pytestmark = pytest.mark.integration
N = 24


@pytest.fixture(scope="module", params=[64, 48], ids=["same-input", "own-decode"])
def candidate_model(request, tmp_path_factory):
    """Seed 1: another random model. 64 px takes over the default's decoded input; 48 px cannot,
    so the shadow thread decodes the kept bytes itself (as for a v2 candidate beside v1)."""
    from model.testing import write_random_model

    return write_random_model(tmp_path_factory.mktemp("candidate") / "random-seed-1.pt", input_size=request.param,
                              seed=1)


def shadow_env(pipeline, **extra: str) -> dict[str, str]:
    topic = pipeline.settings.topic_out.removesuffix(".out") + ".shadow"
    ensure_topics(pipeline.settings.model_copy(update={"shadow_topic": topic}))
    return {"IMAGEGATE_SHADOW_TOPIC": topic, "IMAGEGATE_SHADOW_SAMPLE": "1.0", **extra}


def run_events(pipeline, origin, worker_env: dict[str, str]):
    w = pipeline.worker(**worker_env).start()
    out = pipeline.collector()
    events = [make_event(f"{origin.url}/distinct/{n}.jpg", image_id=f"img-{n}") for n in range(N)]
    pipeline.publish(events)
    ids = {e.event_id for e in events}
    assert out.wait_for(ids, 120, w.alive) == set(), w.log_tail()
    # The shadow runs after the default verdict left: wait (bounded) until it has judged every event.
    deadline = time.monotonic() + 60
    while w.metric("imagegate_shadow_decisions_total") < N and time.monotonic() < deadline:
        time.sleep(0.2)
    return w, ids


def report(pipeline, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "producer_tools.shadow_report", *args], cwd=REPO,
                          env={**pipeline.env, **env}, capture_output=True, text=True, timeout=120)


def test_candidate_model_beside_default_changes_nothing_downstream(pipeline, origin, candidate_model):
    env = shadow_env(pipeline, IMAGEGATE_SHADOW_MODEL_PATH=str(candidate_model))
    w, ids = run_events(pipeline, origin, env)
    s, topic = pipeline.settings, env["IMAGEGATE_SHADOW_TOPIC"]

    assert w.metric("imagegate_shadow_decisions_total") == N
    assert w.metric("imagegate_shadow_events_total", {"outcome": "scored"}) == N
    assert w.metric("imagegate_shadow_events_total", {"outcome": "dropped"}) == 0
    assert w.metric("imagegate_shadow_batch_size_count") >= 1
    assert w.http("/healthz")[0] == 200

    scored = read_all(s, s.topic_out)
    bodies = [json.loads(m.value()) for m in scored]
    assert len(bodies) == N and {b["source_event_id"] for b in bodies} == ids  # exactly one each, nothing extra
    assert all("shadow" not in b and b["model"]["version"] == "0.0.0-random" for b in bodies)
    assert not any(dict(m.headers() or []).get("imagegate_shadow") for m in scored)

    shadow = read_all(s, topic)
    records = [json.loads(m.value()) for m in shadow]
    assert len(records) == N and {r["source_event_id"] for r in records} == ids
    assert all(dict(m.headers())["imagegate_shadow"] == b"1" for m in shadow)
    assert {r["shadow"]["via"] for r in records} == {"worker"}  # the scoring API's say "api" (tests/api/test_shadow.py)
    assert {r["model"]["version"] for r in records} == {"0.0.0-random-seed1"}
    default_by_src = {b["source_event_id"]: b for b in bodies}
    for r in records:  # the record carries the default verdict exactly as emitted
        d = default_by_src[r["source_event_id"]]
        assert r["shadow"]["default"]["decision"] == d["decision"]
        assert r["shadow"]["default"]["reasons"] == [x["code"] for x in d["reasons"]]
    assert any(r["signals"]["quality"] != default_by_src[r["source_event_id"]]["signals"]["quality"] for r in records)
    for r in records:  # the same image measured, whichever decode fed the candidate
        d = default_by_src[r["source_event_id"]]["signals"]
        assert (r["signals"]["width"], r["signals"]["height"]) == (d["width"], d["height"]) == (160, 120)

    out = report(pipeline, env, "--json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["total"] == N and sum(sum(row.values()) for row in rep["decisions"].values()) == N
    text = report(pipeline, env)
    assert text.returncode == 0 and f"/{N} =" in text.stdout, text.stdout + text.stderr


def test_candidate_policy_alone_gives_the_known_disagreement(pipeline, origin, tmp_path):
    # The candidate drops the minimum size: the default flags every 160x120 test photo low_resolution,
    # the candidate never does. Same model outputs (no second model), so nothing else may differ.
    spec = json.loads(DEFAULT_POLICY_FILE.read_text())
    spec["version"] = "candidate-no-min-size"
    for p in spec["profiles"].values():
        p["min_short_side"] = {role: 1 for role in p["min_short_side"]}
        p["reject_short_side"] = 1
    cand = tmp_path / "candidate-policy.json"
    cand.write_text(json.dumps(spec))
    env = shadow_env(pipeline, IMAGEGATE_SHADOW_POLICY_FILE=str(cand))
    w, ids = run_events(pipeline, origin, env)

    assert w.metric("imagegate_shadow_reason_agreement_total", {"code": "low_resolution", "outcome": "default_only"}) == N
    assert w.metric("imagegate_shadow_reason_agreement_total", {"outcome": "candidate_only"}) == 0
    assert w.metric("imagegate_images_inferred_total") == N  # one model: the candidate policy reuses its outputs
    records = [json.loads(m.value()) for m in read_all(pipeline.settings, env["IMAGEGATE_SHADOW_TOPIC"])]
    assert len(records) == N
    for r in records:
        assert "low_resolution" in r["shadow"]["default"]["reasons"]
        assert "low_resolution" not in [x["code"] for x in r["reasons"]]
        assert r["policy"]["version"] == "candidate-no-min-size" and r["model"]["version"] == "0.0.0-random"
    rep = json.loads(report(pipeline, env, "--json").stdout)
    assert rep["total"] == N and rep["reasons"]["low_resolution"]["default_only"] == N
