"""`imagegate-worker --version` prints the installed version and exits without starting a
worker (it used to start one: every argument but --help was ignored)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO, free_port

# Where a started worker would go: a broker and an ops port nobody serves. A worker that
# starts logs "ops endpoint listening" at once and then runs until killed.
ENV = dict(os.environ, IMAGEGATE_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}", IMAGEGATE_METRICS_HOST="127.0.0.1",
           IMAGEGATE_METRICS_PORT=str(free_port()), IMAGEGATE_MODEL_PATH="/nonexistent/model.pt")


def commands() -> list[list[str]]:
    out = [[sys.executable, "-m", "consumer"]]
    script = shutil.which("imagegate-worker", path=str(Path(sys.executable).parent))
    if script:
        out.append([script])
    return out


@pytest.mark.parametrize("cmd", commands(), ids=lambda c: Path(c[-1]).name)
def test_version_prints_the_distribution_version_and_exits_0(cmd):
    r = subprocess.run(cmd + ["--version"], env=ENV, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"imagegate-worker {importlib.metadata.version('imagegate')}\n"
    assert "ops endpoint listening" not in r.stderr and r.stderr == ""


def test_an_unknown_argument_is_refused_instead_of_starting_a_worker():
    r = subprocess.run([sys.executable, "-m", "consumer", "--verison"], env=ENV, cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert "unknown argument '--verison'" in r.stderr and "usage: imagegate-worker" in r.stderr
    assert "ops endpoint listening" not in r.stderr


def test_help_still_exits_0():
    r = subprocess.run([sys.executable, "-m", "consumer", "--help"], env=ENV, cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "--version" in r.stdout


def test_version_without_an_installed_distribution_says_unknown(monkeypatch):
    from consumer import app

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert app.version() == "unknown"
