"""Shadow models (consumer/shadow.py): sampling, agreement counting, config guards, the report's
aggregation, and that a full shadow queue drops samples instead of holding up the chain."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from consumer import metrics
from consumer.agreement import Agreement, reason_outcomes
from consumer.config import ConfigError, DEFAULT_POLICY_FILE, load_settings
from consumer.events import ImageUploaded
from consumer.health import Health
from consumer.policy import Policy
from consumer.shadow import Candidate, Shadow, ShadowSample, needs_own_decode, sampled
from consumer.work import ContentResult, Source, WorkItem
from producer_tools.publish import make_event
from producer_tools.shadow_report import build_report, render


# -- sampling -----------------------------------------------------------------------------------
def keys(n: int) -> list[str]:
    import hashlib

    return [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]


def test_sampling_is_deterministic_and_takes_about_the_share():
    ks = keys(20_000)
    first = [k for k in ks if sampled(k, 0.3)]
    assert first == [k for k in ks if sampled(k, 0.3)]  # a rerun (or another replica) picks the same images
    assert abs(len(first) / len(ks) - 0.3) < 0.02  # binomial sd ~0.003: far outside it means a biased hash


def test_sampling_bounds_and_growing_the_share_keeps_earlier_samples():
    ks = keys(5_000)
    assert not any(sampled(k, 0.0) for k in ks)
    assert all(sampled(k, 1.0) for k in ks)
    assert not sampled(None, 1.0) and not sampled("", 1.0)
    small = {k for k in ks if sampled(k, 0.1)}
    assert small and small <= {k for k in ks if sampled(k, 0.5)}


# -- agreement ----------------------------------------------------------------------------------
def test_reason_outcomes_and_confusion_counts():
    assert reason_outcomes(["blurry", "low_quality"], ["low_quality", "noisy"]) == [
        ("blurry", "default_only"), ("low_quality", "both"), ("noisy", "candidate_only")]
    a = Agreement()
    a.add("accept", "accept", [], [])
    a.add("accept", "demote", [], ["noisy"])
    a.add("reject", "demote", ["blurry"], ["blurry"])
    a.add("accept", "demote", [], ["noisy"])
    assert a.total == 4 and a.agreed == 1
    t = a.table()
    assert t["accept"] == {"accept": 1, "demote": 2, "reject": 0} and t["reject"]["demote"] == 1
    assert sum(sum(r.values()) for r in t.values()) == 4
    assert a.per_reason() == {"blurry": {"both": 1, "default_only": 0, "candidate_only": 0},
                              "noisy": {"both": 0, "default_only": 0, "candidate_only": 2}}


def record(src: str, default: str, cand: str, d_codes=(), c_codes=(), image_id: str = "img") -> bytes:
    return json.dumps({
        "source_event_id": src, "image_id": image_id, "decision": cand, "score": 50.0,
        "reasons": [{"code": c, "message": "m"} for c in c_codes],
        "model": {"name": "m", "version": "2"}, "policy": {"name": "default", "version": "p"},
        "shadow": {"url": f"https://x/{image_id}.jpg", "default": {
            "decision": default, "score": 50.0, "reasons": list(d_codes),
            "model": {"name": "m", "version": "1"}, "policy": {"name": "default", "version": "p"}}},
    }).encode()


def test_report_counts_each_event_once_and_lists_decision_changes_first():
    values = [
        record("e1", "accept", "accept", image_id="a"),
        record("e2", "accept", "demote", [], ["noisy"], image_id="b"),
        record("e2", "accept", "demote", [], ["noisy"], image_id="b"),  # re-delivered: counted once
        record("e3", "demote", "demote", ["blurry"], ["noisy"], image_id="c"),  # same decision, other reason
        b'{"not": "a shadow record"}',
    ]
    r = build_report(values, n_examples=5)
    assert (r["records"], r["invalid"], r["duplicates"], r["total"], r["agreed"]) == (5, 1, 1, 3, 2)
    assert r["decisions"]["accept"]["demote"] == 1 and r["decisions"]["demote"]["demote"] == 1
    assert r["reasons"]["noisy"] == {"both": 0, "default_only": 0, "candidate_only": 2}
    assert [e["image_id"] for e in r["examples"]] == ["b", "c"]
    assert r["versions"][0]["default_model"] == "m@1" and r["versions"][0]["candidate_model"] == "m@2"
    text = render({**r, "topic": "t.shadow", "complete": True})
    assert "agreement 2/3" in text and "https://x/b.jpg" in text


def test_report_counts_images_by_the_process_that_judged_them():
    api = json.loads(record("req-1", "reject", "accept", ["low_resolution"], image_id="u"))
    api["shadow"]["via"] = "api"  # the scoring API's record (consumer/shadow_output.py)
    r = build_report([record("e1", "accept", "accept"), json.dumps(api).encode()])
    assert r["total"] == 2 and r["via"] == {"api": 1, "worker": 1}  # no `via`: an older worker record
    assert "judged by: api 1, worker 1" in render({**r, "topic": "t.shadow", "complete": True})


# -- configuration ------------------------------------------------------------------------------
def test_shadow_topic_equal_to_output_topic_is_refused():
    with pytest.raises(ConfigError, match="output topic"):
        load_settings(shadow_policy_file=DEFAULT_POLICY_FILE, shadow_topic="image_scored")


def test_shadow_config_guards(tmp_path: Path):
    with pytest.raises(ConfigError, match="no candidate"):
        load_settings(shadow_topic="image_scored.shadow")
    with pytest.raises(ConfigError, match="shadow_model_path"):
        load_settings(shadow_model_path=tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="shadow_sample"):
        load_settings(shadow_policy_file=DEFAULT_POLICY_FILE, shadow_sample=1.5)
    s = load_settings(shadow_policy_file=DEFAULT_POLICY_FILE, shadow_topic="image_scored.shadow", shadow_sample=1)
    assert s.shadow_enabled and s.shadow_topic == "image_scored.shadow"
    assert not load_settings().shadow_enabled  # off unless a candidate is named


def test_own_decode_when_the_input_contract_differs():
    class P:
        def __init__(self, size, views=("global",), full=False):
            self.input_size, self.views, self.needs_full_resolution = size, views, full

    assert not needs_own_decode(P(64), P(64))
    assert needs_own_decode(P(512), P(384))
    assert needs_own_decode(P(512), P(512, ("global", "detail"), True))


# -- never holding the chain up -----------------------------------------------------------------
class FakeDefault:
    name, version, input_size, heads = "default-model", "1", 64, ("quality",)


def item(n: int, signals: dict[str, float]) -> WorkItem:
    policy = Policy.from_file(DEFAULT_POLICY_FILE)
    it = WorkItem(Source("in", 0, n, 1, None, None))
    it.event = ImageUploaded.model_validate(make_event(f"https://x/{n}.jpg", image_id=f"img-{n}").model_dump())
    it.sha256 = f"{n:064x}"
    it.content = ContentResult(it.sha256, signals)
    it.verdict = policy.judge(signals, None, "gallery")
    return it


def test_full_shadow_queue_drops_and_counts_without_waiting():
    s = load_settings(shadow_policy_file=DEFAULT_POLICY_FILE, shadow_sample=1.0, shadow_queue=3)
    policy = Policy.from_file(DEFAULT_POLICY_FILE)
    shadow = Shadow(s, FakeDefault(), Candidate(None, policy), Health(30), threading.Event())  # thread not started
    before = metrics.SHADOW_EVENTS.labels("dropped")._value.get()
    done = threading.Event()

    def offer_all():
        for n in range(10):
            shadow.offer(item(n, {"quality": 70.0, "width": 1000.0, "height": 1000.0}))
        done.set()

    threading.Thread(target=offer_all, daemon=True).start()
    assert done.wait(30), "offer blocked on a full shadow queue"
    assert metrics.SHADOW_EVENTS.labels("dropped")._value.get() - before == 7
    assert shadow.batcher.qsize() == 3


def test_policy_only_candidate_rejudges_the_default_outputs(tmp_path: Path):
    spec = json.loads(DEFAULT_POLICY_FILE.read_text())
    spec["version"] = "stricter"
    for p in spec["profiles"].values():
        p["accept_score"] = 90
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps(spec))
    s = load_settings(shadow_policy_file=strict, shadow_sample=1.0)
    shadow = Shadow(s, FakeDefault(), Candidate(None, Policy.from_file(strict)), Health(30), threading.Event())
    it = item(1, {"quality": 70.0, "width": 1000.0, "height": 1000.0, "contrast": 0.5})
    assert it.verdict.decision.value == "accept"
    before = metrics.SHADOW_DECISIONS.labels("accept", "demote")._value.get()
    shadow.offer(it)
    batch = shadow.batcher.next_batch(threading.Event())
    assert len(batch) == 1 and isinstance(batch[0], ShadowSample)
    shadow._process(batch)
    assert metrics.SHADOW_DECISIONS.labels("accept", "demote")._value.get() - before == 1
    assert metrics.SHADOW_REASON_AGREEMENT.labels("low_quality", "candidate_only")._value.get() >= 1


def test_shadow_record_is_an_image_scored_with_its_own_id_and_the_default_beside_it(tmp_path: Path):
    """The record on the shadow topic: a valid image_scored body whose id differs from the default
    verdict's (listing services deduplicate by id; a shadow must never collide with a real verdict)."""
    from consumer.events import ImageScored, ModelRef, scored_event_id
    from consumer.shadow_output import shadow_record

    s = load_settings(shadow_policy_file=DEFAULT_POLICY_FILE, shadow_sample=1.0)
    policy = Policy.from_file(DEFAULT_POLICY_FILE)
    shadow = Shadow(s, FakeDefault(), Candidate(None, policy), Health(30), threading.Event())
    it = item(2, {"quality": 70.0, "width": 1000.0, "height": 1000.0, "contrast": 0.5})
    shadow.offer(it)
    smp = shadow.batcher.next_batch(threading.Event())[0]
    model = ModelRef(name="candidate", version="9.9.9")
    body = shadow_record(smp, it.verdict, model, smp.signals, 1.0, 0.012)
    ImageScored.model_validate({k: v for k, v in body.items() if k != "shadow"})
    assert body["event_id"] != scored_event_id(smp.event.event_id, model.version, it.verdict.policy)
    assert body["event_id"] != scored_event_id(smp.event.event_id, smp.default_model.version, it.verdict.policy)
    assert body["shadow"]["default"]["decision"] == it.verdict.decision.value
    assert body["timings"] == {"inference_ms": 12.0}
