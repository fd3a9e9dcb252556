"""`imagegate status` against a real worker group: members and assignment, committed/end offsets
and lag per partition, DLQ by stage, the versions the worker reports on /metrics (plumbing model)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from producer_tools.publish import make_event
from tests.harness import REPO

pytestmark = pytest.mark.integration


def status(env: dict[str, str], *args: str) -> tuple[int, dict]:
    r = subprocess.run([sys.executable, "-m", "producer_tools.cli", "status", "--json", *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=180)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def wait_status(env, until, *args, tries: int = 60) -> tuple[int, dict]:
    for _ in range(tries):
        rc, st = status(env, *args)
        if until(st):
            return rc, st
        time.sleep(1)
    raise AssertionError(f"status never reached the expected state: {json.dumps(st, indent=1)}")


def test_status_of_a_live_group_then_a_stopped_one(pipeline, origin, images):
    s = pipeline.settings
    w = pipeline.worker().start()
    metrics = f"127.0.0.1:{w.port}"
    names = sorted(p.name for p in images.iterdir())[:6]
    pipeline.publish([make_event(f"{origin.url}/img/{n}", image_id=n) for n in names])

    # the worker scores all six and commits: lag 0 on every partition, one member owning all four
    rc, st = wait_status(pipeline.env, lambda st: st["total_lag"] == 0 and len(st["members"]) == 1
                         and sum(p["end"] for p in st["partitions"]) == 6, "--metrics", metrics)
    assert rc == 0, st["errors"]
    assert st["group"] == s.group_id and st["state"] == "stable"
    assert sorted(st["members"][0]["partitions"]) == [f"{s.topic_in}:{p}" for p in range(4)]
    assert {p["partition"]: p["committed"] for p in st["partitions"]} == {p["partition"]: p["end"] for p in st["partitions"]}
    assert all(p["owner"] == st["members"][0]["client_id"] for p in st["partitions"])
    worker = st["workers"][0]
    current_policy = json.loads(s.policy_file.read_text())["version"]
    assert (worker["model_name"], worker["model_version"], worker["policy_version"], worker["device"]) == \
        ("random-plumbing-only", "0.0.0-random", current_policy, "cpu")
    assert worker["paused"] is False and worker["assigned_partitions"] == 4
    assert st["dlq"]["size"] == 0

    # a malformed event lands in the DLQ (stage validate); stop the worker; three more wait
    pipeline.publish_raw([b"not json"], key=b"bad")
    wait_status(pipeline.env, lambda st: st["dlq"]["size"] == 1 and st["total_lag"] == 0)
    assert w.stop() == 0
    pipeline.publish([make_event(f"{origin.url}/img/{n}", image_id=n) for n in names[:3]])
    rc, st = wait_status(pipeline.env, lambda st: not st["members"] and st["total_lag"] == 3, "--metrics", metrics)
    assert rc == 1  # the worker's metrics endpoint is gone: a partial view
    assert any(f"127.0.0.1:{w.port}" in e for e in st["errors"])
    assert st["dlq"]["by_stage"] == {"validate": 1}
    assert sum(p["end"] - p["committed"] for p in st["partitions"]) == 3

    table = subprocess.run([sys.executable, "-m", "producer_tools.cli", "status"], cwd=REPO, env=pipeline.env,
                           capture_output=True, text=True, timeout=180)
    assert table.returncode == 0, table.stderr
    assert f"group {s.group_id}" in table.stdout and "total lag 3" in table.stdout and "validate 1" in table.stdout
