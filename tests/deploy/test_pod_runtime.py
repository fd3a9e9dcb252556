"""The pod's runtime contract, emulated on the host with bubblewrap: the worker and `imagegate score`
start and work the way the image runs them under the chart.

What the pod gives the container, and what each test's sandbox gives it:

* uid/gid 10001 (the Dockerfile's USER, the chart's runAsUser): `bwrap --unshare-user --uid --gid`;
* a read-only root filesystem (securityContext.readOnlyRootFilesystem): `--ro-bind / /`;
* one writable place, the emptyDir on /tmp: `--tmpfs /tmp`; HOME (/home/imagegate) is not writable;
* the image's environment (the Dockerfile's ENV lines, parsed here, never copied) plus the worker
  container's environment from the chart rendered by helm;
* the network of the host (no `--unshare-net`), so the stack's Kafka and Redis on loopback answer.

Only what differs by site is replaced: the broker and Redis addresses, per-test topic and group
names, the metrics port, the model file (the random-weights plumbing model instead of the shipped
one, except for `imagegate score`, which uses the shipped weights) and the policy file's path
(the ConfigMap's content, bind-mounted read-only where the sandbox can see it). Because the root
is read-only, a run that succeeds wrote nothing outside /tmp; the first test proves the sandbox
really refuses such writes, so the others prove something.

In the uid namespace the sandbox's uid 10001 is the caller's uid outside, so reads are not
restricted the way they would be in the image; the read-only mounts are what is enforced.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.tools import (REPO, chart_env, image_env, image_instruction, one, rendered, secret_files, template,
                                worker_container)
from tests.harness import Collector, free_port, metric_sum
from tests.harness import http_get as http

pytestmark = pytest.mark.integration

# Per site (or per test) values the pod's environment takes from the test's own stack and fixtures.
SITE_SPECIFIC = ("IMAGEGATE_KAFKA_BOOTSTRAP", "IMAGEGATE_REDIS_URL", "IMAGEGATE_TOPIC_IN", "IMAGEGATE_TOPIC_OUT",
                 "IMAGEGATE_TOPIC_DLQ", "IMAGEGATE_GROUP_ID", "IMAGEGATE_MODEL_PATH", "IMAGEGATE_ALLOW_NETWORKS")


def ensure_bwrap() -> str:
    """bubblewrap from Debian's package; `make setup` installs it (deploy/local/stack install)."""
    exe = shutil.which("bwrap")
    if exe is None and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "bubblewrap"], capture_output=True,
                       timeout=600, check=False)
        exe = shutil.which("bwrap")
    assert exe, "bwrap missing: run `make setup` (deploy/local/stack install installs Debian's bubblewrap)"
    return exe


def pod_identity() -> tuple[int, int, str]:
    """uid, gid and HOME of the image's user, checked against the chart's securityContext."""
    user = image_instruction("cpu", "USER")
    uid, gid = (int(x) for x in user.split(":"))
    pod = one(rendered("cpu"), "Deployment")["spec"]["template"]["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
    assert worker_container(rendered("cpu"))["securityContext"]["readOnlyRootFilesystem"] is True
    return uid, gid, image_instruction("cpu", "WORKDIR")


def sandbox(argv: list[str], readable: list[Path] = ()) -> list[str]:
    """`argv` as the pod runs it. `readable`: host paths under /tmp (pytest's) the process must read,
    bound read-only at the same path over the fresh /tmp (they stand in for the ConfigMap mount
    and for files that would be in the image)."""
    uid, gid, _ = pod_identity()
    cmd = [ensure_bwrap(), "--unshare-user", "--uid", str(uid), "--gid", str(gid), "--ro-bind", "/", "/",
           "--tmpfs", "/tmp", "--dev", "/dev", "--proc", "/proc", "--die-with-parent", "--chdir", "/"]
    for p in readable:
        cmd += ["--ro-bind", str(p), str(p)]
    return [*cmd, "--", *argv]


def pod_env(site: dict[str, str], objects=None, **overrides: str) -> dict[str, str]:
    """The image's ENV, then the container env of the chart (`objects`: rendered; the CPU profile by
    default), then the site-specific values. The process starts with exactly this (a container
    inherits nothing from the host)."""
    _, _, home = pod_identity()
    venv_bin = str(Path(sys.executable).parent)
    env = image_env("cpu")
    # The image's venv is /opt/imagegate; here it is the project's venv (same packages, same lock).
    env["PATH"] = env["PATH"].replace("/opt/imagegate/bin", venv_bin)
    env.update(HOME=home, LANG="C.UTF-8", HOSTNAME="imagegate-pod")
    env.update(chart_env(objects or rendered("cpu")))
    env.update({k: site[k] for k in SITE_SPECIFIC if k in site})
    env["PYTHONPATH"] = str(REPO)  # this checkout's code, as `pip install .` puts it into the image
    env.update(overrides)
    return env


def entrypoint() -> list[str]:
    """The image's ENTRYPOINT without tini (PID 1's signal forwarding is not what is checked here)."""
    argv = json.loads(image_instruction("cpu", "ENTRYPOINT"))
    assert argv[:2] == ["tini", "--"], argv
    return argv[2:]


def test_the_sandbox_is_read_only_except_tmp(tmp_path):
    """Without this the other tests prove nothing: HOME, the root and the checkout refuse writes,
    /tmp takes them, and the process runs as the image's uid."""
    uid, gid, home = pod_identity()
    script = (f'id -u; id -g; for d in / "{home}" "{REPO}" "{Path(sys.executable).parent}"; do '
              'if touch "$d/.imagegate-probe" 2>/dev/null; then echo "WROTE $d"; fi; done; '
              'mkdir -p "$HOME/.cache" 2>/dev/null && echo "WROTE HOME"; '
              'touch /tmp/probe && echo tmp-ok')
    r = subprocess.run(sandbox(["sh", "-c", script]), env=pod_env({}), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(uid), str(gid), "tmp-ok"], r.stdout


@pytest.fixture
def policy_mount(tmp_path):
    """The policy ConfigMap's content, where the sandbox can read it."""
    d = tmp_path / "policy"
    d.mkdir()
    data = one(rendered("cpu"), "ConfigMap", "-policy")["data"]["policy.json"]
    (d / Path(chart_env(rendered("cpu"))["IMAGEGATE_POLICY_FILE"]).name).write_text(data)
    return d / "policy.json"




class PodWorker:
    """The worker's entrypoint in the sandbox, its output in a log file, its ops port on loopback."""

    def __init__(self, env: dict[str, str], readable: list[Path], log_path: Path):
        self.port = int(env["IMAGEGATE_METRICS_PORT"])
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(sandbox(entrypoint(), readable=readable), env=env, stdout=log, stderr=log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while http(self.port, "/readyz")[0] != 200:
            assert self.proc.poll() is None, f"worker exited {self.proc.returncode}:\n{self.log()[-4000:]}"
            assert time.monotonic() < deadline, f"not ready in {timeout} s:\n{self.log()[-4000:]}"
            time.sleep(0.5)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)


def score_some(pipeline, origin, worker: PodWorker, prefix: str, n: int = 3) -> list[dict]:
    from producer_tools.publish import make_event

    events = [make_event(f"{origin.url}/img/s{i}-sharp.jpg", image_id=f"{prefix}-{i}") for i in range(n)]
    out = Collector(pipeline.settings)
    pipeline.collectors.append(out)
    pipeline.publish(events)
    missing = out.wait_for({e.event_id for e in events}, timeout=120, alive=worker.alive)
    assert missing == set(), f"not scored: {missing}\n{worker.log()[-4000:]}"
    assert out.dlq == [] and len(out.scored) == n
    return out.scored


def test_worker_starts_read_only_becomes_ready_and_scores(pipeline, origin, plumbing_model, policy_mount):
    port = free_port()
    env = pod_env(pipeline.env, IMAGEGATE_METRICS_PORT=str(port), IMAGEGATE_POLICY_FILE=str(policy_mount))
    assert env["XDG_CACHE_HOME"].startswith("/tmp/")  # the image's: where the first load writes its graph
    worker = PodWorker(env, [plumbing_model.parent, policy_mount.parent], pipeline.tmp / "pod-worker.log")
    try:
        worker.wait_ready()
        scored = score_some(pipeline, origin, worker, "pod")
        assert {b["policy"]["version"] for b in scored} == {json.loads(policy_mount.read_text())["version"]}
        assert http(port, "/healthz")[0] == 200
        assert worker.alive()
    finally:
        worker.kill()
    text = worker.log()
    assert "Read-only file system" not in text and "Permission denied" not in text, text[-4000:]


def test_score_cli_runs_read_only_with_the_shipped_model(tmp_path, policy_mount):
    """`kubectl exec ... imagegate score` in the pod: the shipped weights, their graph built into /tmp."""
    from tests.images import encode, photo

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(encode(photo(320, 240), quality=90))
    env = pod_env({}, IMAGEGATE_POLICY_FILE=str(policy_mount))
    assert "IMAGEGATE_MODEL_PATH" not in env  # the image's default: the shipped weights
    r = subprocess.run(sandbox(["imagegate", "score", str(photos / "a.jpg"), "--format", "jsonl"],
                               readable=[photos, policy_mount.parent]),
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    (row,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert row["path"].endswith("a.jpg") and row["decision"] in ("accept", "demote", "reject")
    assert 0 <= row["score"] <= 100 and row["signals"]["width"] == 320


# ---- secrets as files, the Redis ACL of docs/production.md ---------------------------------------

PRODUCTION_DOC = REPO / "docs" / "production.md"


def documented_redis_acl() -> str:
    """The one-line ACL SETUSER after the `redis-acl` marker in docs/production.md."""
    text = PRODUCTION_DOC.read_text()
    m = re.search(r"<!-- redis-acl:[^>]*-->\s*```[a-z]*\n\s*(ACL SETUSER [^\n]+)\n\s*```", text)
    assert m, "docs/production.md lost its redis-acl block"
    return m.group(1).strip()


@pytest.fixture
def acl_user(stack):
    """The documented Redis user, created on the test stack's Redis with a fresh password."""
    import redis as redis_lib

    admin = redis_lib.Redis.from_url(stack.env_vars()["IMAGEGATE_REDIS_URL"])
    words = shlex.split(documented_redis_acl())
    assert words[:2] == ["ACL", "SETUSER"] and ">PASSWORD" in words
    user, password = words[2], f"acl-pw-{secrets.token_hex(12)}"
    admin.execute_command(*[w if w != ">PASSWORD" else f">{password}" for w in words])
    admin.execute_command("ACL", "LOG", "RESET")
    yield user, password, admin
    admin.execute_command("ACL", "DELUSER", user)
    admin.close()


def secret_profile(tmp_path: Path, values: dict[str, str]) -> tuple[tuple[dict, ...], Path]:
    """The chart with the Redis URL and SASL credentials from Secrets; the projected volume written
    under tmp_path as the kubelet would. Returns the objects and the host directory of the mount."""
    objects = tuple(d for d in yaml.safe_load_all(template(
        "--set", "redis.existingSecret=imagegate-redis", "--set", "kafka.sasl.existingSecret=imagegate-kafka-sasl",
        "--set", "kafka.sasl.mechanism=PLAIN").stdout) if d)
    mounts = secret_files(objects, tmp_path / "volumes", values)
    (mount_path,) = mounts
    assert chart_env(objects)["IMAGEGATE_SECRETS_DIR"] == mount_path
    return objects, mounts[mount_path]


def test_secrets_from_files_work_and_never_show(pipeline, origin, plumbing_model, policy_mount, acl_user, tmp_path):
    """The Redis URL (with the ACL user's password) and the SASL password come from the Secret files;
    the worker, at DEBUG with librdkafka's config debug on, writes results to Redis as the documented
    ACL user, and neither secret appears in its log, its ops endpoints or a configuration error."""
    user, redis_pw, admin = acl_user
    sasl_pw = f"sasl-pw-{secrets.token_hex(12)}"
    redis_port = urlsplit(pipeline.env["IMAGEGATE_REDIS_URL"]).port
    values = {"url": f"redis://{user}:{redis_pw}@127.0.0.1:{redis_port}/0", "username": "imagegate",
              "password": sasl_pw}
    objects, secret_dir = secret_profile(tmp_path, values)
    site = {k: v for k, v in pipeline.env.items() if k != "IMAGEGATE_REDIS_URL"}  # the URL is the Secret's
    port = free_port()
    env = pod_env(site, objects, IMAGEGATE_METRICS_PORT=str(port), IMAGEGATE_POLICY_FILE=str(policy_mount),
                  IMAGEGATE_SECRETS_DIR=str(secret_dir), IMAGEGATE_LOG_LEVEL="DEBUG",
                  # The test broker has no SASL listener: the credentials are configured, not exchanged.
                  **{"IMAGEGATE_KAFKA__security.protocol": "PLAINTEXT", "IMAGEGATE_KAFKA__debug": "conf,security"})
    assert not any(redis_pw in v or sasl_pw in v for v in env.values()), "a secret in the environment"
    readable = [plumbing_model.parent, policy_mount.parent, secret_dir.parent]

    worker = PodWorker(env, readable, pipeline.tmp / "pod-secrets.log")
    try:
        worker.wait_ready()
        scored = score_some(pipeline, origin, worker, "acl")
        # Written by the ACL user: the compare-and-set script ran (latest result per image) and the content keys.
        for body in scored:
            stored = admin.get(f"imagegate:image:{body['image_id']}")
            assert stored is not None and json.loads(stored)["event_id"] == body["event_id"]
        assert admin.keys("imagegate:v*:sha256:*")
        assert worker_metric(port, "imagegate_redis_up") == 1.0
        assert worker_metric(port, "imagegate_cache_requests_total", {"op": "put", "result": "error"}) == 0
        assert worker_metric(port, "imagegate_cache_requests_total", {"op": "put", "result": "ok"}) >= 3
        denied = [e for e in admin.execute_command("ACL", "LOG") if _acl_field(e, "username") == user
                  and _acl_field(e, "object") not in ("client|setinfo", "client")]
        assert denied == [], denied
        ops = "".join(http(port, p)[1] for p in ("/metrics", "/healthz", "/readyz"))
    finally:
        worker.kill()
    log = worker.log()
    assert '"level": "debug"' in log  # DEBUG was really on
    assert "sasl" in log.lower()  # librdkafka's conf debug really ran
    for secret in (redis_pw, sasl_pw):
        assert secret not in log and secret not in ops

    # A configuration error with the same secrets: it names the variable, never a value.
    bad = subprocess.run(sandbox(entrypoint(), readable=readable), env={**env, "IMAGEGATE_MAX_BATCH_SIZE": "0"},
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "IMAGEGATE_MAX_BATCH_SIZE" in bad.stderr
    assert redis_pw not in bad.stdout + bad.stderr and sasl_pw not in bad.stdout + bad.stderr


def _acl_field(entry, name: str):
    """One field of an ACL LOG entry (redis-py returns a flat list or a dict, by version)."""
    if isinstance(entry, dict):
        v = entry.get(name) if name in entry else entry.get(name.encode())
    else:
        pairs = dict(zip(entry[::2], entry[1::2]))
        v = pairs.get(name.encode(), pairs.get(name))
    return v.decode() if isinstance(v, bytes) else v


def worker_metric(port: int, name: str, labels: dict[str, str] | None = None) -> float:
    code, text = http(port, "/metrics")
    assert code == 200
    return metric_sum(text, name, labels)
