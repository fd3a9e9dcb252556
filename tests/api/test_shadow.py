"""Shadow models in the scoring API: `IMAGEGATE_SHADOW_*` runs the worker's Shadow beside the
default on a sampled share of the requests, and the caller still gets exactly the default verdict.

The candidate here is a POLICY that accepts everything, beside the repository's default policy,
which rejects every 320x240 main image (too small for a main image: `low_resolution`). So each
shadowed request is a known disagreement (default reject, candidate accept) and an answer that
followed the candidate would show at once. The plumbing model has RANDOM weights: these tests
check plumbing and counting, never quality.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import jsonschema
import pytest

from consumer.config import DEFAULT_POLICY_FILE
from consumer.policy import Policy
from tests.harness import REPO, Topics, read_all
from tests.images import encode, photo

N = 6
SCORED_SCHEMA = json.loads((REPO / "deploy" / "schemas" / "image_scored.v1.schema.json").read_text())


@pytest.fixture(scope="module")
def accept_all(tmp_path_factory) -> Path:
    """The default policy file with every threshold opened: the candidate accepts whatever the model says."""
    spec = json.loads(DEFAULT_POLICY_FILE.read_text())
    spec["version"] = "candidate-accept-all"
    for p in spec["profiles"].values():
        p.update(accept_score=0, reject_score=0, reject_short_side=1, aspect_ratio=[0.01, 100], min_contrast=0,
                 reject_heads={}, measures={}, heads={k: 1.0 for k in p["heads"]},
                 min_short_side={role: 1 for role in p["min_short_side"]})
    path = tmp_path_factory.mktemp("candidate") / "accept-all.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture(scope="module")
def plain(start_api):
    """The API without any shadow setting: the answers a shadow must not change."""
    return start_api()


SAME = ("decision", "score", "reasons", "signals", "policy", "model", "content_sha256")


def verdicts(bodies: list[dict]) -> list[dict]:
    return [{k: b[k] for k in SAME} for b in bodies]


def photos(first_seed: int) -> list[bytes]:
    return [encode(photo(320, 240, seed=first_seed + i), quality=90) for i in range(N)]


def score_all(api, data: list[bytes]) -> list[dict]:
    answers = [api.score(d, query="role=main") for d in data]
    assert all(r.status == 200 for r in answers), answers
    return [r.json() for r in answers]


def test_candidate_policy_is_judged_beside_the_default_and_the_answer_stays_the_default(start_api, plain, accept_all):
    api = start_api(IMAGEGATE_SHADOW_POLICY_FILE=str(accept_all), IMAGEGATE_SHADOW_SAMPLE="1.0")
    data = photos(300)
    bodies = score_all(api, data)
    assert verdicts(bodies) == verdicts(score_all(plain, data))  # exactly what the API answers without a shadow

    default_version = Policy.from_file(DEFAULT_POLICY_FILE).version
    assert [b["decision"] for b in bodies] == ["reject"] * N  # the default's verdict, not the candidate's accept
    assert all(b["policy"]["version"] == default_version and "shadow" not in b for b in bodies)
    assert all("low_resolution" in [r["code"] for r in b["reasons"]] for b in bodies)
    # The shadow judges after the answer went out: wait (bounded) until it has judged every request.
    api.wait_metric("imagegate_shadow_events_total", N, {"outcome": "scored"})
    assert api.metric("imagegate_shadow_decisions_total", {"default": "reject", "candidate": "accept"}) == N
    assert api.metric("imagegate_shadow_decisions_total") == N
    agreement = "imagegate_shadow_reason_agreement_total"
    assert api.metric(agreement, {"code": "low_resolution", "outcome": "default_only"}) == N
    assert api.metric(agreement, {"outcome": "candidate_only"}) == 0
    assert api.metric("imagegate_shadow_events_total", {"outcome": "dropped"}) == 0
    assert api.metric("imagegate_images_inferred_total") == N  # a candidate policy alone reuses the default model
    assert api.request("GET", "/healthz").status == 200


def test_no_shadow_or_a_share_of_0_changes_nothing(start_api, plain, accept_all):
    off = start_api(IMAGEGATE_SHADOW_POLICY_FILE=str(accept_all), IMAGEGATE_SHADOW_SAMPLE="0")
    data = photos(400)
    assert verdicts(score_all(off, data)) == verdicts(score_all(plain, data))
    for api in (plain, off):
        assert api.metric("imagegate_shadow_events_total") == 0
        assert api.metric("imagegate_shadow_decisions_total") == 0
        assert api.request("GET", "/healthz").status == 200


@pytest.mark.integration
def test_shadow_records_reach_the_shadow_topic_marked_as_the_apis(stack, start_api, accept_all, monkeypatch):
    from consumer.config import load_settings
    from producer_tools.kafka_clients import ensure_topics

    topics = Topics()
    topic = f"{topics.prefix}.shadow"
    env = {**stack.env_vars(), **topics.env, "IMAGEGATE_SHADOW_TOPIC": topic}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = load_settings(shadow_policy_file=accept_all)
    ensure_topics(settings)
    api = start_api(**env, IMAGEGATE_SHADOW_POLICY_FILE=str(accept_all), IMAGEGATE_SHADOW_SAMPLE="1.0")
    bodies = score_all(api, photos(500))
    api.wait_metric("imagegate_shadow_events_total", N, {"outcome": "scored"})

    deadline = time.monotonic() + 60
    while len(shadow := read_all(settings, topic)) < N:  # produced after the answers: bounded wait
        assert time.monotonic() < deadline, f"{len(shadow)} of {N} shadow records arrived\n{api.log_tail()}"
        time.sleep(0.2)
    assert len(shadow) == N
    assert all(dict(m.headers())["imagegate_shadow"] == b"1" for m in shadow)
    records = [json.loads(m.value()) for m in shadow]
    by_request = {b["source_event_id"]: b for b in bodies}  # the API's request id is the record's source event
    assert {r["source_event_id"] for r in records} == set(by_request)
    for r in records:
        d = by_request[r["source_event_id"]]
        assert r["shadow"]["via"] == "api"
        assert r["shadow"]["default"]["decision"] == d["decision"] == "reject"
        assert r["shadow"]["default"]["reasons"] == [x["code"] for x in d["reasons"]]
        assert r["decision"] == "accept" and r["policy"]["version"] == "candidate-accept-all"
        assert r["content_sha256"] == d["content_sha256"] and r["image_id"] == d["image_id"]
        jsonschema.validate({k: v for k, v in r.items() if k != "shadow"}, SCORED_SCHEMA)  # image_scored-shaped
    assert api.metric("imagegate_shadow_publish_errors_total") == 0
    # Nothing of the shadow on the output topic: the API never produces there.
    assert read_all(settings, settings.topic_out) == []


def test_a_dead_shadow_thread_fails_healthz(plumbing_model, accept_all, monkeypatch):
    """In-process: the API's shadow registers with its health like the worker's (consumer/shadow.py says why)."""
    import model
    from consumer.app import load_candidate
    from consumer.config import load_settings
    from scoring_api.config import ApiSettings
    from scoring_api.service import ScoringService

    s = load_settings(model_path=plumbing_model, shadow_policy_file=accept_all, shadow_sample=1.0)
    predictor = model.load(plumbing_model, "cpu")
    policy = Policy.from_file(s.policy_file, s.default_policy)
    service = ScoringService(s, ApiSettings(cache=False), predictor, policy, None,
                             load_candidate(s, predictor, policy))
    assert service.shadow is not None

    def die() -> None:
        raise SystemExit("shadow thread gone")  # not an Exception: the thread's own guard does not catch it

    monkeypatch.setattr(service.shadow.output, "poll", die)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    service.start()
    try:
        service.shadow.thread.join(10)
        ok, detail = service.health.live()
        assert not ok and "shadow thread died" in detail["problems"]
    finally:
        service.stop()
