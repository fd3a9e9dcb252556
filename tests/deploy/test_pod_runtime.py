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
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.tools import REPO, chart_env, image_env, image_instruction, one, rendered, worker_container
from tests.harness import Collector, free_port

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


def pod_env(site: dict[str, str], **overrides: str) -> dict[str, str]:
    """The image's ENV, then the chart's container env, then the site-specific values. The process
    starts with exactly this (a container inherits nothing from the host)."""
    _, _, home = pod_identity()
    venv_bin = str(Path(sys.executable).parent)
    env = image_env("cpu")
    # The image's venv is /opt/imagegate; here it is the project's venv (same packages, same lock).
    env["PATH"] = env["PATH"].replace("/opt/imagegate/bin", venv_bin)
    env.update(HOME=home, LANG="C.UTF-8", HOSTNAME="imagegate-pod")
    env.update(chart_env(rendered("cpu")))
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


def http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def test_worker_starts_read_only_becomes_ready_and_scores(pipeline, origin, plumbing_model, policy_mount):
    from producer_tools.publish import make_event

    port = free_port()
    env = pod_env(pipeline.env, IMAGEGATE_METRICS_PORT=str(port), IMAGEGATE_POLICY_FILE=str(policy_mount))
    assert env["XDG_CACHE_HOME"].startswith("/tmp/")  # the image's: where the first load writes its graph
    log_path = pipeline.tmp / "pod-worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(sandbox(entrypoint(), readable=[plumbing_model.parent, policy_mount.parent]),
                                env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 180
        while http(port, "/readyz")[0] != 200:
            assert proc.poll() is None, f"worker exited {proc.returncode}:\n{log_path.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"not ready in 180 s:\n{log_path.read_text()[-4000:]}"
            time.sleep(0.5)
        events = [make_event(f"{origin.url}/img/s{i}-sharp.jpg", image_id=f"pod-{i}") for i in range(3)]
        out = Collector(pipeline.settings)
        pipeline.collectors.append(out)
        pipeline.publish(events)
        missing = out.wait_for({e.event_id for e in events}, timeout=120, alive=lambda: proc.poll() is None)
        assert missing == set(), f"not scored: {missing}\n{log_path.read_text()[-4000:]}"
        assert out.dlq == [] and len(out.scored) == 3
        assert {b["policy"]["version"] for b in out.scored} == {json.loads(policy_mount.read_text())["version"]}
        assert http(port, "/healthz")[0] == 200
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(30)
    text = log_path.read_text()
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
