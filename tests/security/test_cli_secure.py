"""Every `imagegate` command against the secure stack, as the `operator` principal: three SASL_SSL
(SCRAM-SHA-512) brokers with ACLs, Redis with TLS and an ACL user (read-only for `operator`).

The CLI is configured only the way an operator configures it: IMAGEGATE_* variables (the
`env --secure --user operator` lines plus topic names), run as `.venv/bin/imagegate`, a real
subprocess; each test asserts its exit code and output. Data comes from a real worker (the
`worker` principal) that scored one image, dead-lettered one it could not reach and wrote a
shadow verdict for the first, and dead-lettered one from an HTTPS origin whose certificate it
does not trust, all on topics of this module's own (names under `clitest.`, which
the admin grants to `worker` and `operator` the way an operator grants a deployment's topics).

`score`, `serve` and `completion` never talk to a broker (offline by design); `score` and
`completion` are run here with a broker address nobody listens on to prove it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.stack import settings_for
from tests.harness import REPO, Collector, read_all
from tests.https_origin import TestPKI
from tests.images import variants
from tests.origin import Origin
from tests.security.conftest import worker

pytestmark = [pytest.mark.integration, pytest.mark.secure]

IMAGEGATE = REPO / ".venv" / "bin" / "imagegate"
PREFIX = "clitest."  # topics and groups this module may create and use (granted below)


@dataclass(frozen=True)
class Names:
    """A set of topics (and a group) of their own, under PREFIX."""

    run: str

    @classmethod
    def fresh(cls) -> "Names":
        return cls(f"{PREFIX}{uuid.uuid4().hex[:8]}")

    def env(self) -> dict[str, str]:
        return {"IMAGEGATE_TOPIC_IN": f"{self.run}.in", "IMAGEGATE_TOPIC_OUT": f"{self.run}.out",
                "IMAGEGATE_TOPIC_DLQ": f"{self.run}.dlq", "IMAGEGATE_GROUP_ID": f"{self.run}.workers"}

    @property
    def topics(self) -> list[str]:
        return [f"{self.run}.in", f"{self.run}.out", f"{self.run}.dlq"]


def principal_env(stack, user: str, **extra: str) -> dict[str, str]:
    """What an operator exports: the stack's lines for `user` and the module's settings, nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEGATE_")}
    return {**env, **stack.env_of(user), "PYTHONPATH": str(REPO), **extra}


def cli(env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(IMAGEGATE), *args], env=env, cwd=cwd or REPO, capture_output=True, text=True,
                          timeout=timeout)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"rc {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr
    return r


def one_line_failure(r: subprocess.CompletedProcess, rc: int) -> str:
    """The failure is exit code `rc` with exactly one line on stderr and no traceback."""
    assert r.returncode == rc, f"rc {r.returncode}\nstdout:\n{r.stdout[-2000:]}\nstderr:\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    print(f"exit {r.returncode}: {lines[0]}")  # the operator's view, shown by -rA
    return lines[0]


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def grants(secure_stack) -> None:
    """As `admin`: `operator` may create, describe, read and write topics under PREFIX and use its
    groups; `worker` may read and write them and use its groups."""
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType,
                                       ResourceType)

    ops = {("operator", ResourceType.TOPIC): ("CREATE", "DESCRIBE", "READ", "WRITE", "DESCRIBE_CONFIGS"),
           ("operator", ResourceType.GROUP): ("READ", "DESCRIBE"),
           ("worker", ResourceType.TOPIC): ("DESCRIBE", "READ", "WRITE"),
           ("worker", ResourceType.GROUP): ("READ", "DESCRIBE")}
    acls = [AclBinding(rtype, PREFIX, ResourcePatternType.PREFIXED, f"User:{user}", "*", getattr(AclOperation, op),
                       AclPermissionType.ALLOW) for (user, rtype), names in ops.items() for op in names]
    admin = AdminClient(secure_stack.kafka_conf("admin"))  # kept alive until the futures are done
    for fut in admin.create_acls(acls).values():
        fut.result(timeout=30)


@pytest.fixture(scope="module")
def candidate_policy(tmp_path_factory) -> Path:
    """The default policy under another version: a shadow candidate and a `policy diff` input."""
    from consumer.config import DEFAULT_POLICY_FILE

    spec = json.loads(DEFAULT_POLICY_FILE.read_text())
    spec["version"] = "cli-candidate"
    path = tmp_path_factory.mktemp("policy") / "candidate.json"
    path.write_text(json.dumps(spec))
    return path


@dataclass
class Run:
    env: dict[str, str]  # the operator's environment for this run's topics
    names: Names
    good: dict  # `publish` output lines
    dead: dict
    tls: dict  # an HTTPS origin whose certificate comes from a CA nobody trusts
    published_stdout: str


@pytest.fixture(scope="module")
def run(secure_stack, secure_env, grants, candidate_policy, tmp_path_factory) -> Run:
    """`imagegate topics` and `publish` as operator; a real worker scores one image, dead-letters one
    it cannot reach (nothing listens on port 9) and shadows the first under the candidate policy."""
    root = tmp_path_factory.mktemp("origin")
    for name, data in variants(0).items():
        (root / f"s0-{name}").write_bytes(data)
    origin = Origin(root)
    pki = TestPKI(root, tmp_path_factory.mktemp("pki"))  # its CA is not in the worker's trust store either
    stranger = pki.unknown_ca()
    names = Names.fresh()
    shared = {**names.env(), "IMAGEGATE_SHADOW_TOPIC": f"{names.run}.shadow",
              "IMAGEGATE_SHADOW_POLICY_FILE": str(candidate_policy)}
    env = principal_env(secure_stack, "operator", **shared)
    logs = tmp_path_factory.mktemp("run")
    w = None
    try:
        made = ok(cli(env, "topics", "--replication-factor", "3", "--partitions", "2"))
        assert f"{names.run}.shadow" in made.stdout and "replication factor 3" in made.stdout, made.stdout
        w = worker({**secure_env, **shared, "IMAGEGATE_SHADOW_SAMPLE": "1.0", "IMAGEGATE_RETRY_DELAYS_S": "[0.2]"},
                   logs / "worker.log").start()
        out = Collector(settings_for(env))
        try:
            pub = ok(cli(env, "publish", f"{origin.url}/img/s0-sharp.jpg", "http://127.0.0.1:9/unreachable.jpg",
                         f"{stranger.url}/img/s0-sharp.jpg"))
            good, dead, tls = json_lines(pub.stdout)
            ids = {good["event_id"], dead["event_id"], tls["event_id"]}
            assert out.wait_for(ids, 120, alive=w.alive) == set(), w.log_tail()
            deadline = time.monotonic() + 60
            while len(out.dlq) < 2 and time.monotonic() < deadline:
                out.poll(0.5)
            assert sorted(json.loads(v)["event_id"] for v, _ in out.dlq) == sorted([dead["event_id"], tls["event_id"]]), \
                w.log_tail()
        finally:
            out.close()
        assert w.stop() == 0
        yield Run(env, names, good, dead, tls, pub.stdout)
    finally:
        if w is not None and w.alive():
            w.kill()
        origin.close()
        pki.close()


# --- topics ---------------------------------------------------------------------------------------


def _replicas_and_isr(stack, topics: list[str]) -> dict[str, tuple[set[int], str | None]]:
    """As `admin`: each topic's replica counts over its partitions, and its min.insync.replicas when
    set on the topic itself (None when it is only the broker's default)."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, ResourceType

    admin = AdminClient(stack.kafka_conf("admin"))
    md = admin.list_topics(timeout=30)
    out = {}
    for t in topics:
        assert t in md.topics and md.topics[t].error is None, f"{t} was not created"
        counts = {len(p.replicas) for p in md.topics[t].partitions.values()}
        res = ConfigResource(ResourceType.TOPIC, t)
        entry = admin.describe_configs([res])[res].result(timeout=30)["min.insync.replicas"]
        out[t] = (counts, entry.value if getattr(entry.source, "value", entry.source) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value else None)
    return out


def test_topics_with_replication_factor_3_sets_min_insync_replicas_2(secure_stack, grants):
    names = Names.fresh()
    env = principal_env(secure_stack, "operator", **names.env())
    r = ok(cli(env, "topics", "--replication-factor", "3"))
    assert f"created: {', '.join(names.topics)} (4 partitions, replication factor 3, min.insync.replicas 2; " \
           f"3 broker(s))" in r.stdout, r.stdout
    assert _replicas_and_isr(secure_stack, names.topics) == {t: ({3}, "2") for t in names.topics}
    again = ok(cli(env, "topics", "--replication-factor", "3"))
    assert "created: none (all exist)" in again.stdout
    assert all(f"exists: {t} (4 partitions, replication factor 3)" in again.stdout for t in names.topics), again.stdout


def test_topics_refuses_replication_factor_1_on_three_brokers_unless_forced(secure_stack, grants):
    from confluent_kafka.admin import AdminClient

    names = Names.fresh()
    env = principal_env(secure_stack, "operator", **names.env())
    line = one_line_failure(cli(env, "topics", "--replication-factor", "1"), 2)
    assert line.startswith("imagegate topics: replication factor 1 on a 3-broker cluster"), line
    assert "--force" in line
    listed = AdminClient(secure_stack.kafka_conf("admin")).list_topics(timeout=30).topics
    assert not any(t in listed for t in names.topics), "a refused plan created topics"
    r = ok(cli(env, "topics", "--replication-factor", "1", "--force"))
    assert "replication factor 1;" in r.stdout, r.stdout
    assert _replicas_and_isr(secure_stack, names.topics) == {t: ({1}, None) for t in names.topics}


# --- feed and look ----------------------------------------------------------------------------------


def test_publish_prints_the_events_it_published(run):
    assert run.good["url"].endswith("/img/s0-sharp.jpg") and run.dead["url"].endswith(":9/unreachable.jpg")
    events = {json.loads(m.value())["event_id"] for m in read_all(settings_for(run.env), run.names.topics[0])}
    assert {run.good["event_id"], run.dead["event_id"], run.tls["event_id"]} <= events


def test_tail_prints_the_scored_event(run):
    r = ok(cli(run.env, "tail", "--from-beginning", "--count", "1", "--timeout", "60"))
    (line,) = json_lines(r.stdout)
    assert line["value"]["source_event_id"] == run.good["event_id"]
    assert line["value"]["decision"] in ("accept", "demote", "reject")


def test_get_reads_the_result_from_redis_over_tls_as_a_read_only_user(run):
    r = ok(cli(run.env, "get", run.good["image_id"]))
    body = json.loads(r.stdout)
    assert body["image_id"] == run.good["image_id"] and body["source_event_id"] == run.good["event_id"]
    assert one_line_failure(cli(run.env, "get", "no-such-image"), 1) == "no result for image no-such-image"


def test_report_writes_the_review_page(run, tmp_path):
    out = tmp_path / "review.html"
    r = ok(cli(run.env, "report", "--last", "10", "--out", str(out)))
    assert f"wrote {out} (1 results)" in r.stderr
    assert run.good["image_id"] in out.read_text()


def test_policy_diff_reads_the_stored_results(run, candidate_policy):
    r = ok(cli(run.env, "policy", "diff", "--policy-file", str(candidate_policy), "--last", "10"))
    assert r.stdout.startswith("1 stored results re-judged under policy cli-candidate: 0 change decision"), r.stdout


def test_shadow_report_reads_the_shadow_topic(run):
    r = ok(cli(run.env, "shadow", "report", "--json", "--timeout", "60"))
    report = json.loads(r.stdout)
    assert report["topic"] == f"{run.names.run}.shadow" and report["complete"] is True
    assert report["total"] == 1 and report["agreed"] == 1, report  # the same thresholds under another version


def test_status_shows_the_group_its_commits_and_the_dlq(run):
    r = ok(cli(run.env, "status", "--json"))
    st = json.loads(r.stdout)
    assert st["errors"] == [] and st["group"] == f"{run.names.run}.workers"
    topic_in = run.names.topics[0]
    assert {p["partition"] for p in st["partitions"] if p["topic"] == topic_in} == {0, 1}
    assert sum(p["committed"] or 0 for p in st["partitions"] if p["topic"] == topic_in) >= 3  # all three events done
    assert st["dlq"]["topic"] == run.names.topics[2] and st["dlq"]["size"] == 2 and st["dlq"]["by_stage"] == {"fetch": 2}


# --- repair -----------------------------------------------------------------------------------------


def test_dlq_list_shows_the_dead_lettered_events(run):
    r = ok(cli(run.env, "dlq", "list", "--json"))
    *records, summary = json_lines(r.stdout)
    assert sorted((x["image_id"], x["stage"]) for x in records) == sorted([(run.dead["image_id"], "fetch"),
                                                                            (run.tls["image_id"], "fetch")])
    assert summary["total"] == 2


def test_an_origin_certificate_from_an_unknown_ca_is_our_trouble_retried_then_dead_lettered_never_rejected(run):
    """The HTTPS table's end to end row (docs/production.md "HTTPS origins"): the real worker refused
    the certificate, retried (quick and delayed), then dead-lettered the event; the seller got no verdict."""
    records = {x["image_id"]: x for x in json_lines(ok(cli(run.env, "dlq", "list", "--json")).stdout)[:-1]}
    rec = records[run.tls["image_id"]]
    assert "certificate verify failed" in rec["error"] and "not the seller's problem" in rec["error"], rec["error"]
    assert rec["attempts"] == 2  # the first try and one delayed retry (IMAGEGATE_RETRY_DELAYS_S=[0.2])
    scored = [json.loads(m.value()) for m in read_all(settings_for(run.env), run.names.topics[1])]
    assert [b["source_event_id"] for b in scored] == [run.good["event_id"]]


def test_dlq_replay_republishes_it_and_commits(run):
    r = ok(cli(run.env, "dlq", "replay"))
    assert f"replayed 2 to {run.names.topics[0]}, failed 0" in r.stderr, r.stderr
    assert "group imagegate-dlq-replay committed" in r.stderr
    again = ok(cli(run.env, "dlq", "replay"))
    assert "fully replayed by group imagegate-dlq-replay" in again.stderr, again.stderr
    values = [json.loads(m.value()) for m in read_all(settings_for(run.env), run.names.topics[0])]
    ids = [v["event_id"] for v in values]
    assert ids.count(run.dead["event_id"]) == 2 and ids.count(run.tls["event_id"]) == 2  # the originals and the replays


def _input_records(run) -> dict[tuple[int, int], dict]:
    """(partition, offset) -> event, for everything on the run's input topic now."""
    return {(m.partition(), m.offset()): json.loads(m.value()) for m in read_all(settings_for(run.env), run.names.topics[0])}


def _new_events(run, before: dict, image_id: str) -> list[dict]:
    return [v for k, v in _input_records(run).items() if k not in before and v["image_id"] == image_id]


def test_backfill_from_file(run, tmp_path):
    before = _input_records(run)
    src = tmp_path / "images.jsonl"
    src.write_text("".join(json.dumps({"image_id": f"bf-{i}", "url": f"https://cdn.example.com/bf-{i}.jpg"}) + "\n"
                           for i in range(3)))
    r = ok(cli(run.env, "backfill", "--from-file", str(src), cwd=tmp_path))
    summary = json_lines(r.stdout)[-1]
    assert (summary["total"], summary["published"], summary["failed"]) == (3, 3, 0), r.stdout
    assert all(len(_new_events(run, before, f"bf-{i}")) == 1 for i in range(3))


def test_backfill_from_redis_scans_results_over_tls_as_a_read_only_user(run, tmp_path):
    before = _input_records(run)
    r = ok(cli(run.env, "backfill", "--from-redis", "--model-version", "older", "--policy-version", "older",
               cwd=tmp_path))
    assert "selecting imagegate:image:* results not scored by model older + policy older" in r.stderr
    summary = json_lines(r.stdout)[-1]
    assert summary["published"] >= 1 and summary["failed"] == 0, r.stdout
    (again,) = _new_events(run, before, run.good["image_id"])
    assert again["url"] == run.good["url"]


def test_loadgen_publishes_count_events(run):
    r = ok(cli(run.env, "loadgen", run.good["url"], "--count", "50", "--json"))
    assert json.loads(r.stdout)["published"] == 50


# --- offline commands, and a principal that may not write ------------------------------------------


def test_score_and_completion_need_no_broker(plumbing_model, tmp_path):
    """Offline by design: a broker address nobody listens on changes nothing."""
    img = tmp_path / "a.jpg"
    img.write_bytes(variants(1)["sharp.jpg"])
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IMAGEGATE_")}, "PYTHONPATH": str(REPO),
           "IMAGEGATE_KAFKA_BOOTSTRAP": "127.0.0.1:9", "IMAGEGATE_REDIS_URL": "rediss://nobody@127.0.0.1:9/0",
           "IMAGEGATE_MODEL_PATH": str(plumbing_model), "IMAGEGATE_DEVICE": "cpu"}
    r = ok(cli(env, "score", str(img), "--json"))
    assert json.loads(r.stdout.splitlines()[0])["decision"] in ("accept", "demote", "reject")
    completion = ok(cli(env, "completion", "bash"))
    assert "complete" in completion.stdout and "loadgen" in completion.stdout


def test_publish_as_the_listing_principal_fails_closed(secure_stack, grants):
    """`listing` may read image_scored only: the CLI with its credentials publishes nothing and says so
    in one line (exit 1), no traceback."""
    env = principal_env(secure_stack, "listing")
    before = len(read_all(settings_for(principal_env(secure_stack, "admin")), "image_uploaded"))
    line = one_line_failure(cli(env, "publish", "https://cdn.example.com/x.jpg"), 1)
    assert line.startswith("imagegate publish: 1 of 1 events not delivered"), line  # it said "0 events not delivered"
    assert "authorization failed" in line.lower(), line
    assert len(read_all(settings_for(principal_env(secure_stack, "admin")), "image_uploaded")) == before


def test_tail_of_a_topic_the_principal_may_not_read_fails_closed(secure_stack):
    """`listing` may not read image_uploaded: `tail` must say so (exit 1), not print nothing and exit 0."""
    env = principal_env(secure_stack, "listing")
    line = one_line_failure(cli(env, "tail", "--topic", "image_uploaded", "--timeout", "20"), 1)
    assert line.startswith("imagegate tail: Kafka error:") and "authorization failed" in line.lower(), line
