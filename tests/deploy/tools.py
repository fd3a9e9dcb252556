"""Shared by the deploy checks: where `deploy/tools/install` put helm and crdcheck, rendering the
chart for a profile, and the worker's own settings and metric names to compare against."""

from __future__ import annotations

import functools
import os
import re
import shlex
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


# ---- the image's runtime contract, read from the Dockerfile ------------------------------------

def _dockerfile_stages(text: str) -> dict[str, tuple[str, list[str]]]:
    """Stage name -> (its FROM base, its instructions with continuation lines joined)."""
    joined = re.sub(r"\\\n", " ", text)
    out: dict[str, tuple[str, list[str]]] = {}
    name = None
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            name = m.group(2) or m.group(1)
            out[name] = (m.group(1), [])
        elif name:
            out[name][1].append(line)
    return out


def image_env(target: str = "cpu", base_path: str | None = None) -> dict[str, str]:
    """The environment a container of this Dockerfile target starts with: every ENV of the target
    and the stages it is built FROM, in order, `$VAR` expanded as Docker does. The base image's
    own PATH is stood in for by `base_path` (the host's, by default)."""
    stages = _dockerfile_stages(DOCKERFILE.read_text())
    chain = []
    while target in stages:
        chain.append(target)
        target = stages[target][0]
    env: dict[str, str] = {"PATH": base_path if base_path is not None else os.environ["PATH"]}
    for stage in reversed(chain):
        for line in stages[stage][1]:
            m = re.match(r"ENV\s+(.*)", line, re.I)
            if not m:
                continue
            for word in shlex.split(m.group(1)):
                key, sep, value = word.partition("=")
                assert sep, f"ENV {word!r}: use the KEY=value form"
                env[key] = re.sub(r"\$\{?(\w+)\}?", lambda v: env.get(v.group(1), ""), value)
    return env


def image_instruction(target: str, instruction: str) -> str | None:
    """The last value of an instruction (USER, WORKDIR, ENTRYPOINT) in the target's FROM chain."""
    stages = _dockerfile_stages(DOCKERFILE.read_text())
    found = None
    chain = []
    while target in stages:
        chain.append(target)
        target = stages[target][0]
    for stage in reversed(chain):
        for line in stages[stage][1]:
            m = re.match(rf"{instruction}\s+(.*)", line, re.I)
            if m:
                found = m.group(1).strip()
    return found


# ---- the worker container as the chart renders it ------------------------------------------------

POD_NAME = "imagegate-6f7c9d8b5-x2kqz"


def chart_env(objects, secret_values: dict[str, str] | None = None) -> dict[str, str]:
    """The variables the chart gives the worker container: the ConfigMap (envFrom), then env entries
    (downward API -> POD_NAME, Secret refs -> `secret_values[key]`)."""
    c = worker_container(objects)
    env: dict[str, str] = {}
    for src in c["envFrom"]:
        name = src["configMapRef"]["name"]
        env.update(next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name)["data"])
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "fieldRef" in e["valueFrom"]:
            assert e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            env[e["name"]] = POD_NAME
        else:
            env[e["name"]] = (secret_values or {})[e["valueFrom"]["secretKeyRef"]["key"]]
    return env


def secret_files(objects, root: Path, secret_values: dict[str, str]) -> dict[str, Path]:
    """The worker container's projected Secret volumes as the kubelet would write them, under `root`:
    mountPath -> host directory. Each item's file holds `secret_values[key]`."""
    c = worker_container(objects)
    volumes = {v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    out = {}
    for m in c["volumeMounts"]:
        v = volumes[m["name"]]
        if "projected" not in v:
            continue
        d = root / m["name"]
        d.mkdir(parents=True, exist_ok=True)
        for src in v["projected"]["sources"]:
            for item in src["secret"]["items"]:
                (d / item["path"]).write_text(secret_values[item["key"]])
        out[m["mountPath"]] = d
    return out
