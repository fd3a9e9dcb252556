"""Shared by the deploy checks: where `deploy/tools/install` put helm and crdcheck, rendering the
chart for a profile, and the worker's own settings and metric names to compare against."""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "imagegate"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
COMPOSE = REPO / "deploy" / "compose.yaml"
RULES = REPO / "deploy" / "prometheus" / "imagegate.rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "imagegate.json"
PROMETHEUS_EXAMPLE = REPO / "deploy" / "prometheus" / "prometheus.example.yml"

CACHE = Path(os.environ.get("IMAGEGATE_CACHE", Path.home() / ".cache" / "imagegate"))
BIN = CACHE / "go" / "bin"
CRDS = CACHE / "crds"

# librdkafka properties the worker owns (it refuses IMAGEGATE_KAFKA__ overrides of them).
WORKER_OWNED_KAFKA = ("enable.idempotence", "acks", "enable.auto.offset.store", "enable.auto.commit")

# A throughput figure for rendering the GPU profile in tests only; it is not a measurement
# (values-gpu.yaml makes the operator supply theirs).
TEST_ONLY_GPU_IMAGES_PER_S = "100"


def go() -> str:
    """The go the install script used: on PATH, or the toolchain it fetched into the cache."""
    import shutil

    found = shutil.which("go") or next((str(p) for p in sorted((CACHE / "go" / "toolchain").glob("*/bin/go"))), None)
    assert found, "no go: run `make setup` (deploy/tools/install)"
    return found


def tool(name: str) -> str:
    """A tool installed by `make setup` (deploy/tools/install); missing = setup was not run."""
    path = BIN / name
    assert path.is_file() and os.access(path, os.X_OK), f"{path} missing: run `make setup` (deploy/tools/install)"
    return str(path)


@dataclass(frozen=True)
class Profile:
    name: str
    args: tuple[str, ...]


SECRET_ARGS = ("--set", "kafka.sasl.existingSecret=imagegate-kafka-sasl",
               "--set", "kafka.tls.existingSecret=imagegate-kafka-tls",
               "--set", "kafka.tls.certKey=tls.crt", "--set", "kafka.tls.keyKey=tls.key",
               "--set", "redis.existingSecret=imagegate-redis",
               "--set", "settings.topic_backfill=image_uploaded.backfill")

PROFILES = {
    "cpu": Profile("cpu", ()),
    "gpu": Profile("gpu", ("-f", str(CHART / "values-gpu.yaml"),
                           "--set", f"autoscaling.imagesPerSecondPerWorker={TEST_ONLY_GPU_IMAGES_PER_S}")),
    # SASL + mutual TLS to Kafka, Redis URL from a Secret, a backfill topic: every optional branch.
    "secure": Profile("secure", SECRET_ARGS),
}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, f"helm {' '.join(args)}\n{r.stdout}\n{r.stderr}"
    return r


# A go-installed helm reports Kubernetes v1.20 unless told (release builds stamp it at link time).
KUBE_VERSION = "1.37.0"


def template(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return helm("template", "imagegate", str(CHART), "--namespace", "imagegate", "--kube-version", KUBE_VERSION,
                *args, check=check)


@functools.cache
def rendered_text(profile: str) -> str:
    return template(*PROFILES[profile].args).stdout


@functools.cache
def rendered(profile: str) -> tuple[dict, ...]:
    return tuple(d for d in yaml.safe_load_all(rendered_text(profile)) if d)


def one(objects, kind: str, suffix: str = "") -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"expected one {kind} *{suffix}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def worker_container(objects) -> dict:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def settings_fields() -> set[str]:
    """The worker's setting names, read from the code at test time (the lead adds settings)."""
    from consumer.config import Settings

    return set(Settings.model_fields)


def exported_metric_names() -> set[str]:
    """Every sample name the worker can expose: its registry after import, plus the GPU gauges
    (registered only on CUDA) and histogram/counter sample suffixes."""
    from prometheus_client import REGISTRY

    import consumer.metrics as m

    names = set(m.GPU_METRICS)
    for family in REGISTRY.collect():
        names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
    return names
