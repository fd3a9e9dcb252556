"""The `imagegate` console script itself: --version, shell completion, `-` for stdin, --json, and
exit codes with one stderr line (no traceback) for a missing file, an unreachable Redis and an
unknown policy profile. Runs the installed entry point with this checkout on PYTHONPATH."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from consumer.config import DEFAULT_POLICY_FILE
from producer_tools import exit_codes
from producer_tools.cli import build_parser
from tests.harness import REPO
from tests.images import encode, photo

IMAGEGATE = Path(sys.executable).with_name("imagegate")  # the console script `make setup` installs
COMMANDS = {"topics", "publish", "serve", "loadgen", "tail", "get", "backfill", "dlq", "status", "score", "report",
            "policy", "shadow", "api", "completion"}


def imagegate(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    assert IMAGEGATE.is_file(), f"{IMAGEGATE} missing: the console script is installed by `make setup`"
    return subprocess.run([str(IMAGEGATE), *args], cwd=REPO, input=stdin, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})


def one_line_error(r: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture
def jpg(tmp_path):
    f = tmp_path / "a.jpg"
    f.write_bytes(encode(photo(64, 48)))
    return f


def test_every_command_is_registered():
    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    assert set(sub.choices) == COMMANDS


def test_version_names_the_installed_distribution():
    try:
        want = version("imagegate")
    except PackageNotFoundError:
        want = "unknown"
    r = imagegate("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"imagegate {want}", r


def complete(script: Path, *words: str) -> list[str]:
    """What bash offers after `imagegate WORDS...` (the last word is the one being completed)."""
    line = " ".join(("imagegate",) + words)
    words_arr = " ".join(f"'{w}'" for w in ("imagegate",) + words)
    r = subprocess.run(["bash", "-c", f"source {script}; COMP_WORDS=({words_arr}); COMP_CWORD={len(words)}; "
                        f"COMP_LINE='{line}'; COMP_POINT={len(line)}; _shtab_imagegate; printf '%s\\n' \"${{COMPREPLY[@]}}\""],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_bash_completion_names_every_command_and_is_valid_bash(tmp_path):
    r = imagegate("completion", "bash")
    assert r.returncode == 0, r.stderr
    script = tmp_path / "imagegate.bash"
    script.write_text(r.stdout)
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    assert set(complete(script, "")) >= COMMANDS
    assert complete(script, "topics", "--re") == ["--replication-factor"]
    assert set(complete(script, "policy", "")) >= {"check", "diff"}


def test_zsh_completion_is_a_compdef_for_imagegate():
    r = imagegate("completion", "zsh")
    assert r.returncode == 0 and r.stdout.startswith("#compdef imagegate"), r.stdout[:200]
    assert "policy" in r.stdout and "backfill" in r.stdout


@pytest.mark.parametrize("args", [("score", "missing.jpg"), ("publish", "missing.jpg"),
                                  ("policy", "check", "missing.json"),
                                  ("policy", "diff", "--policy-file", "missing.json", "x.jsonl")])
def test_missing_input_file_is_one_line_and_usage_exit(args):
    r = imagegate(*args)
    one_line_error(r, exit_codes.USAGE, "missing.json" if "missing.json" in args else "missing.jpg", "no such file")


def test_unreachable_redis_is_one_line_and_partial_exit():
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        r = imagegate("get", "img-1", IMAGEGATE_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    one_line_error(r, exit_codes.PARTIAL, "imagegate get: Redis error", str(port))


def test_unreachable_kafka_is_one_line_and_partial_exit():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        r = imagegate("topics", "--timeout", "2", IMAGEGATE_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}")
    one_line_error(r, exit_codes.PARTIAL, "imagegate topics: Kafka error")


def test_unknown_policy_profile_is_refused_before_scoring(jpg):
    r = imagegate("score", str(jpg), "--policy", "no-such-profile", "--model", "missing-weights.pt")
    one_line_error(r, exit_codes.USAGE, "unknown policy profile 'no-such-profile'", "main_image")


def test_invalid_configuration_exits_usage():
    r = imagegate("get", "img-1", **{"IMAGEGATE_KAFKA__replication.factor": "3"})
    assert r.returncode == exit_codes.USAGE and "Traceback" not in r.stderr
    assert "IMAGEGATE_TOPIC_REPLICATION_FACTOR" in r.stderr


def test_score_reads_paths_from_stdin_and_json_equals_the_deprecated_format(jpg, plumbing_model, tmp_path):
    other = tmp_path / "b.png"
    other.write_bytes(encode(photo(80, 60, seed=1), "PNG"))
    via_stdin = imagegate("score", "-", "--json", "--model", str(plumbing_model), stdin=f"{jpg}\n\n{other}\n")
    assert via_stdin.returncode == 0, via_stdin.stderr
    rows = [json.loads(line) for line in via_stdin.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(jpg), str(other)]
    old = imagegate("score", str(jpg), str(other), "--format", "jsonl", "--model", str(plumbing_model))
    assert old.returncode == 0 and old.stdout == via_stdin.stdout


def scored_row(i: int, fill: float) -> dict:
    from consumer.policy import Policy

    signals = {"quality": 80.0, "width": 1200.0, "height": 1200.0, "blur": 0.05, "noise": 0.05, "compression": 0.05,
               "underexposure": 0.05, "overexposure": 0.05, "overlay": 0.05, "contrast": 0.2,
               "background_white": 1.0, "product_fill": fill, "border": 0.0}
    v = Policy.from_file(DEFAULT_POLICY_FILE).judge(signals, None, "main")
    return {"image_id": f"img-{i}", "role": "main", "score": v.score, "decision": v.decision.value,
            "reasons": [r.model_dump(mode="json") for r in v.reasons], "signals": signals,
            "policy": v.policy.model_dump()}


def test_policy_diff_json_from_stdin_matches_the_file(tmp_path):
    rows = "".join(json.dumps(scored_row(i, f)) + "\n" for i, f in enumerate([0.9, 0.5, 0.3]))
    src = tmp_path / "scored.jsonl"
    src.write_text(rows)
    spec = json.loads(DEFAULT_POLICY_FILE.read_text())
    spec["profiles"]["main_image"]["measures"]["product_fill"] = {"demote": 0.95, "reject": 0.2}
    new = tmp_path / "new.json"
    new.write_text(json.dumps(spec))
    from_file = imagegate("policy", "diff", "--policy-file", str(new), "--json", str(src))
    from_stdin = imagegate("policy", "diff", "--policy-file", str(new), "--json", "-", stdin=rows)
    assert from_file.returncode == 0 and from_stdin.returncode == 0, (from_file.stderr, from_stdin.stderr)
    d = json.loads(from_stdin.stdout)
    assert d == json.loads(from_file.stdout)
    assert d["total"] == 3 and d["changed"] >= 1 and d["policy_version"] == spec["version"]
    assert sum(t["count"] for t in d["transitions"]) == 3
    assert {e["key"] for e in d["examples"]} <= {"img-0", "img-1", "img-2"} and d["examples"]


def test_policy_check_reads_stdin():
    r = imagegate("policy", "check", "-", stdin=DEFAULT_POLICY_FILE.read_text())
    assert r.returncode == 0 and ": OK, version " in r.stdout, r.stderr
