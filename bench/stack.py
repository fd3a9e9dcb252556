"""The local stack (deploy/local/stack) as benchmarks and tests drive it, plus what every
stack bench repeats: a worker environment on fresh topics, its Settings, a worker process.

Why here: bench/ must not import tests/ (test fixtures, not tooling), and deploy/local is not
a Python package; bench/ is importable from the repo root by both the bench scripts
(`sys.path.insert(0, REPO)`) and pytest, so tests/harness.py re-exports `Stack` from here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STACK = REPO / "deploy" / "local" / "stack"


class Stack:
    """One stack dir driven through the `deploy/local/stack` command line (never imported:
    the command is the interface tests and operators share)."""

    def __init__(self, root: Path):
        self.root = root
        self.env = dict(os.environ, IMAGEGATE_STACK_DIR=str(root))

    def run(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        r = subprocess.run([str(STACK), *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"stack {' '.join(args)} -> rc {r.returncode}\n"
                                 f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    def env_vars(self) -> dict[str, str]:
        out = self.run("env").stdout
        pairs = dict(line.split("=", 1) for line in out.splitlines() if line.strip())
        return pairs

    def pid(self, name: str) -> int | None:
        f = self.root / name / f"{name}.pid"
        return int(f.read_text()) if f.exists() else None


def default_stack() -> Stack:
    """The stack `make stack-start` runs: IMAGEGATE_STACK_DIR or <repo>/.stack."""
    return Stack(Path(os.environ.get("IMAGEGATE_STACK_DIR") or REPO / ".stack"))


@contextmanager
def running(stack: Stack | None = None, install: bool = False) -> Iterator[Stack]:
    """A running stack for the duration: started if it was not running, and then stopped
    at the end (a stack someone else started is left running)."""
    stack = stack or default_stack()
    if install:
        stack.run("install", timeout=900)
    started = stack.run("status", check=False).returncode != 0
    if started:
        stack.run("start")
    try:
        yield stack
    finally:
        if started:
            stack.run("stop", check=False)


def worker_env(stack: Stack, prefix: str | None = None, **extra: str) -> dict[str, str]:
    """os.environ + the stack's addresses + topics and group of their own (so runs never see
    each other's events) + a CPU worker allowed to fetch from a loopback origin."""
    prefix = prefix or f"b{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env.update(stack.env_vars())
    env.update({"IMAGEGATE_TOPIC_IN": f"{prefix}.in", "IMAGEGATE_TOPIC_OUT": f"{prefix}.out",
                "IMAGEGATE_TOPIC_DLQ": f"{prefix}.dlq", "IMAGEGATE_GROUP_ID": f"{prefix}.workers",
                "IMAGEGATE_DEVICE": "cpu", "IMAGEGATE_ALLOW_NETWORKS": '["127.0.0.0/8"]',
                "IMAGEGATE_METRICS_HOST": "127.0.0.1"})
    env.update(extra)
    return env


def settings_for(env: dict[str, str]):
    """The worker's Settings as it would load them from `env`, without leaving `env` in os.environ."""
    from consumer.config import load_settings

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except (urllib.error.HTTPError, OSError):
        return False


def start_worker(env: dict[str, str], log: Path, wait_ready: float = 300.0) -> subprocess.Popen:
    """`python -m consumer` as a subprocess (so kill -9 is real), returned once /readyz says
    it owns partitions; IMAGEGATE_METRICS_PORT must be set to a free port."""
    port = int(env["IMAGEGATE_METRICS_PORT"])
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "consumer"], env=env, cwd=REPO, stdout=fh, stderr=fh)
    deadline = time.monotonic() + wait_ready
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}; see {log}")
        if ready(port):
            return proc
        time.sleep(0.2)
    proc.kill()
    proc.wait(10)
    raise RuntimeError(f"worker not ready after {wait_ready:.0f}s; see {log}")
