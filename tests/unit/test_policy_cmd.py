"""`imagegate policy check` and `policy diff` over JSON-lines files (the topic path: tests/integration)."""

from __future__ import annotations

import json
import subprocess
import sys

from consumer.config import DEFAULT_POLICY_FILE
from consumer.policy import Policy
from producer_tools.policy_cmd import diff, read_jsonl, stored_from
from tests.harness import REPO

BUNDLED_VERSION = json.loads((REPO / "consumer" / "policies" / "default.json").read_text())["version"]

P = Policy.from_file(DEFAULT_POLICY_FILE)
MAIN = {"quality": 80.0, "width": 1200.0, "height": 1200.0, "blur": 0.05, "noise": 0.05, "compression": 0.05,
        "underexposure": 0.05, "overexposure": 0.05, "overlay": 0.05, "contrast": 0.2, "background_white": 1.0,
        "product_fill": 0.9, "border": 0.0}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "producer_tools.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def body(i, signals, profile=None, role="main"):
    v = P.judge(signals, profile, role)
    return {"image_id": f"img-{i}", "role": role, "score": v.score, "decision": v.decision.value,
            "reasons": [r.model_dump(mode="json") for r in v.reasons], "signals": signals, "policy": v.policy.model_dump()}


def test_check_accepts_the_bundled_file_and_names_profiles_and_roles():
    r = cli("policy", "check", str(DEFAULT_POLICY_FILE))
    assert r.returncode == 0, r.stderr
    assert f"OK, version {BUNDLED_VERSION}, profiles default, lenient, main_image; roles main -> main_image, gallery -> default" in r.stdout


def test_check_lists_every_problem_with_its_place(tmp_path):
    spec = json.loads(DEFAULT_POLICY_FILE.read_text())
    spec["profiles"]["main_image"]["measures"]["whiteness"] = 0.9
    spec["profiles"]["lenient"]["heads"]["sharpness"] = 0.5
    f = tmp_path / "p.json"
    f.write_text(json.dumps(spec))
    r = cli("policy", "check", str(f))
    assert r.returncode == 1 and r.stdout == ""
    assert "profiles.main_image: measures: 'whiteness' is not a measured signal" in r.stderr
    assert "profiles.lenient: heads: 'sharpness' is not a model head" in r.stderr


def test_diff_counts_moves_per_decision_and_reason(tmp_path):
    rows = [body(i, {**MAIN, "product_fill": f}) for i, f in enumerate([0.9, 0.8, 0.7, 0.5, 0.3])]
    rows.append({"path": "x.jpg", "score": 0, "decision": "reject", "reasons": [{"code": "unreadable"}], "signals": {}})
    src = tmp_path / "scored.jsonl"
    src.write_text("\n".join(json.dumps({"value": r}) if i % 2 else json.dumps(r) for i, r in enumerate(rows)) + "\n")
    stored = read_jsonl([src])
    assert len(stored) == 6 and stored[1].key == "img-1" and stored[5].key == "x.jpg"

    spec = json.loads(DEFAULT_POLICY_FILE.read_text())
    spec["profiles"]["main_image"]["measures"]["product_fill"] = {"demote": 0.6, "reject": 0.2}
    new = tmp_path / "new.json"
    new.write_text(json.dumps(spec))
    d = diff(stored, Policy.from_file(new))
    assert d.total == 6 and d.not_rejudged == 1
    assert [m.stored.key for m in d.moves] == ["img-1", "img-2", "img-4"]  # 0.8, 0.7 -> accept; 0.3 -> demote
    assert d.transitions[("demote", "accept")] == 2 and d.transitions[("reject", "demote")] == 1
    assert d.transitions[("demote", "demote")] == 1  # 0.5 is still too small
    assert d.reasons_removed["product_too_small"] == 2

    r = cli("policy", "diff", "--policy-file", str(new), str(src), "--report", str(tmp_path / "movers.html"))
    assert r.returncode == 0, r.stderr
    assert f"6 stored results re-judged under policy {BUNDLED_VERSION}: 3 change decision (1 decided before scoring, unchanged)" in r.stdout
    assert "img-4 (main_image): was product_too_small; now The product fills 30 % of the frame; main images need at least 60 %" in r.stdout
    assert (tmp_path / "movers.html").read_text().count('<div class="card ') == 3


def test_diff_under_a_forced_profile():
    stored = [stored_from(body(0, {**MAIN, "product_fill": 0.5}), "x")]
    assert diff(stored, P, "lenient").transitions[("demote", "accept")] == 1
    assert diff(stored, P).moves == []  # its own profile, same file: nothing moves


def test_diff_refuses_bad_input(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"decision": "accept", "signals": {"width": "wide"}}\n')
    r = cli("policy", "diff", "--policy-file", str(DEFAULT_POLICY_FILE), str(bad))
    assert r.returncode == 1 and "bad.jsonl:1: signals must be an object of numbers" in r.stderr
    r = cli("policy", "diff", "--policy-file", str(DEFAULT_POLICY_FILE), str(bad), "--profile", "nope")
    assert r.returncode == 2 and "profile 'nope' is not in" in r.stderr


def test_diff_report_shows_pictures_of_score_output_rows(tmp_path):
    from tests.images import encode, photo

    img = tmp_path / "shoe.jpg"
    img.write_bytes(encode(photo(320, 240), quality=85))
    row = body(0, {**MAIN, "product_fill": 0.7})
    row = {"path": str(img), **{k: row[k] for k in ("score", "decision", "reasons", "signals")}}
    src = tmp_path / "score.jsonl"
    src.write_text(json.dumps(row) + "\n")
    r = cli("policy", "diff", "--policy-file", str(DEFAULT_POLICY_FILE), "--profile", "lenient", str(src),
            "--report", str(tmp_path / "m.html"))
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "m.html").read_text()
    assert page.count('<div class="card ') == 1 and page.count('src="data:image/jpeg;base64,') == 1
    assert "was demote (product_too_small)" in page
