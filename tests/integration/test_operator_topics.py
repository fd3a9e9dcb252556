"""`imagegate topics` against the real single-broker stack (issue 23): replication factor 1 is what
one broker can hold, and is what the default min(3, brokers) picks; asking for 3 is refused with a
one-line error and creates nothing. The multi-broker refusal of RF 1: tests/unit/test_topic_plan.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from producer_tools import exit_codes
from tests.harness import REPO, Topics

pytestmark = pytest.mark.integration

IMAGEGATE = Path(sys.executable).with_name("imagegate")


@pytest.fixture
def env(stack):
    e = {**os.environ, **stack.env_vars(), **Topics().env, "PYTHONPATH": str(REPO), "IMAGEGATE_TOPIC_PARTITIONS": "3"}
    e.pop("IMAGEGATE_TOPIC_BACKFILL", None)
    e.pop("IMAGEGATE_TOPIC_REPLICATION_FACTOR", None)
    return e


def imagegate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(IMAGEGATE), "topics", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def described(env: dict[str, str]) -> dict[str, tuple[int, set[int]]]:
    """name -> (partitions, replica counts over partitions) for this test's topics, as the broker reports them."""
    md = AdminClient({"bootstrap.servers": env["IMAGEGATE_KAFKA_BOOTSTRAP"]}).list_topics(timeout=30)
    names = {env["IMAGEGATE_TOPIC_IN"], env["IMAGEGATE_TOPIC_OUT"], env["IMAGEGATE_TOPIC_DLQ"]}
    return {t: (len(m.partitions), {len(p.replicas) for p in m.partitions.values()})
            for t, m in md.topics.items() if t in names}


def test_default_on_one_broker_is_rf_1_and_a_rerun_creates_nothing(env):
    r = imagegate(env, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert sorted(out["created"]) == sorted([env["IMAGEGATE_TOPIC_IN"], env["IMAGEGATE_TOPIC_OUT"], env["IMAGEGATE_TOPIC_DLQ"]])
    assert (out["brokers"], out["replication_factor"], out["min_insync_replicas"], out["partitions"]) == (1, 1, None, 3)
    assert described(env) == {t: (3, {1}) for t in out["created"]}

    again = imagegate(env, "--json", "--replication-factor", "1")
    assert again.returncode == 0, again.stderr
    out2 = json.loads(again.stdout)
    assert out2["created"] == [] and out2["existing"] == {t: {"partitions": 3, "replication_factor": 1} for t in out["created"]}


def test_explicit_rf_1_and_partitions_flag(env):
    r = imagegate(env, "--replication-factor", "1", "--partitions", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("created: ") and "2 partitions, replication factor 1; 1 broker(s)" in r.stdout
    assert list(described(env).values()) == [(2, {1})] * 3


@pytest.mark.parametrize("how", ["flag", "setting"])
def test_rf_3_on_one_broker_is_refused_in_one_line_and_creates_nothing(env, how):
    if how == "flag":
        r = imagegate(env, "--replication-factor", "3")
    else:
        r = imagegate({**env, "IMAGEGATE_TOPIC_REPLICATION_FACTOR": "3"})
    assert r.returncode == exit_codes.USAGE, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0] == ("imagegate topics: replication factor 3 needs at least 3 brokers; the cluster has 1 "
                        "(use --replication-factor 1 or fewer)")
    assert described(env) == {}
