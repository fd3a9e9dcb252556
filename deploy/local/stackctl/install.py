"""`stack install`: the Kafka jars (Maven, cached per pom hash) and the Debian packages the
stack and the tests need (redis-server, prometheus/promtool, chromium)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .paths import HERE, REPO, StackError, cache_root, locked, say

POM = HERE / "kafka" / "pom.xml"


def kafka_libs() -> Path:
    sha = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    return cache_root() / f"kafka-{sha}" / "libs"


def _maven_copy(libs: Path) -> None:
    """Resolve the pom into a temp dir and rename it into place, so a failed fetch leaves no half cache."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError("mvn not found on PATH (need Maven 3.x and Java 17+)")
    if not shutil.which("java"):
        raise StackError("java not found on PATH (need Java 17+)")
    libs.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="libs.", dir=libs.parent))
    say(f"kafka jars: fetching with Maven into {libs} (from {POM.relative_to(REPO)})")
    t0 = time.monotonic()
    cmd = [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
           f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
    r = subprocess.run(cmd, cwd=str(POM.parent), capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StackError(f"maven failed ({' '.join(cmd)}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    if libs.exists():
        shutil.rmtree(libs)
    tmp.rename(libs)
    shutil.copy2(POM, libs.parent / "pom.xml")
    (libs.parent / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
    n = len(list(libs.glob("*.jar")))
    say(f"kafka jars: {n} jars copied in {time.monotonic() - t0:.1f}s")


def ensure_jars(verbose: bool = True) -> Path:
    libs = kafka_libs()
    done = libs.parent / ".complete"
    if done.exists():
        if verbose:
            say(f"kafka jars: cached at {libs}")
        return libs
    with locked(libs.parent.parent / f".{libs.parent.name}.lock"):
        if not done.exists():
            _maven_copy(libs)
    return libs


def ensure_debian_package(command: str, package: str, what: str) -> bool:
    """Make `command` available, apt-installing Debian's `package` when it is missing.

    Returns True when it installed the package. apt-get update runs only if the first try fails.
    """
    if shutil.which(command):
        say(f"{command}: present ({shutil.which(command)})")
        return False
    if not shutil.which("apt-get"):
        raise StackError(f"{command} is missing and apt-get is not available; install {what} yourself")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = ["sudo", "-n"] if os.geteuid() != 0 else []
    apt = sudo + ["apt-get", "install", "-y", "--no-install-recommends", package]
    say(f"{command}: missing, running " + " ".join(apt))
    if subprocess.run(apt, env=env).returncode != 0:
        say(f"{command}: install failed, running apt-get update and retrying")
        subprocess.run(sudo + ["apt-get", "update"], env=env, check=False)
        subprocess.run(apt, env=env)
    if not shutil.which(command):
        raise StackError(f"could not install {package} ({command}) with apt-get")
    say(f"{command}: installed")
    return True


def ensure_redis() -> None:
    ensure_debian_package("redis-server", "redis-server", "Redis 7")


def ensure_prometheus() -> None:
    """promtool + prometheus (Debian's `prometheus` package) for tests/observability."""
    if ensure_debian_package("promtool", "prometheus", "Prometheus 2.x") and shutil.which("systemctl"):
        # The package starts a system prometheus on :9090; the tests run their own.
        sudo = ["sudo", "-n"] if os.geteuid() != 0 else []
        subprocess.run(sudo + ["systemctl", "disable", "--now", "prometheus"], capture_output=True, check=False)


def ensure_chromium() -> None:
    """Debian's chromium for tests/browser (Playwright drives it via executable_path; no browser download)."""
    ensure_debian_package("chromium", "chromium", "Chromium")


def ensure_bwrap() -> None:
    """Debian's bubblewrap for tests/deploy/test_pod_runtime.py (the pod's read-only, uid 10001 runtime, emulated)."""
    ensure_debian_package("bwrap", "bubblewrap", "bubblewrap")


def install_all(services_only: bool = False) -> None:
    """Everything `make test` needs; `services_only`: just what the stack runs (Kafka jars,
    redis-server), which is all `make demo` needs: promtool, chromium and bwrap are for tests."""
    t0 = time.monotonic()
    ensure_jars()
    ensure_redis()
    if services_only:
        say(f"install (services only) done in {time.monotonic() - t0:.1f}s")
        return
    ensure_prometheus()
    ensure_chromium()
    ensure_bwrap()
    say(f"install done in {time.monotonic() - t0:.1f}s")
