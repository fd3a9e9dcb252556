"""The chart's optional scoring API (templates/api.yaml, values `api`): off by default, valid
Kubernetes objects when on, and its pods are never selected as workers."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from tests.deploy.tools import CHART, KUBE_VERSION, helm, one, rendered, template

ON = ("--set", "api.enabled=true", "--set", "api.keysSecret=imagegate-api-keys", "--set", "api.concurrency=16")


@pytest.fixture(scope="module")
def objects():
    return tuple(d for d in yaml.safe_load_all(template(*ON).stdout) if d)


def _matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_off_by_default():
    assert not [o for o in rendered("cpu") if o["metadata"]["name"].endswith("-api")]


def test_lint_and_kubernetes_schemas(objects):
    r = helm("lint", "--strict", str(CHART), *ON)
    assert "0 chart(s) failed" in r.stdout
    for kind in ("Deployment", "Service"):
        kubernetes_validate.validate(one(objects, kind, "-api"), KUBE_VERSION, strict=True)


def test_runs_the_api_with_its_settings_and_probes(objects):
    pod = one(objects, "Deployment", "-api")["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["command"] == ["tini", "--", "python", "-m", "scoring_api"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["IMAGEGATE_API_CONCURRENCY"] == "16" and env["IMAGEGATE_API_PORT"] == "8080"
    assert env["IMAGEGATE_API_KEYS_FILE"] == "/etc/imagegate/api-keys/digests"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["api-keys"] == "/etc/imagegate/api-keys"
    assert {v["name"]: v.get("secret", {}).get("secretName") for v in pod["volumes"]}["api-keys"] == "imagegate-api-keys"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["envFrom"] == one(objects, "Deployment", "imagegate")["spec"]["template"]["spec"]["containers"][0]["envFrom"]


def test_api_pods_are_not_selected_by_worker_objects(objects):
    api = one(objects, "Deployment", "-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert _matches(one(objects, "Service", "-api")["spec"]["selector"], labels)
    worker_selectors = [one(objects, "Deployment", "imagegate")["spec"]["selector"]["matchLabels"],
                        one(objects, "Service", "imagegate")["spec"]["selector"],
                        one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                        one(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]]
    for sel in worker_selectors:
        assert not _matches(sel, labels), sel
