"""The Helm chart renders for every profile, and what it renders is valid: `helm lint`, the
Kubernetes schemas (kubernetes-validate, strict: unknown fields fail) for core objects, and for
the custom resources KEDA's own CRD schema plus strict decoding into the KEDA and
prometheus-operator Go API types (deploy/tools/crdcheck). No cluster is needed or used."""

from __future__ import annotations

import copy
import json
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.tools import (CHART, CRDS, PROFILES, WORKER_OWNED_KAFKA, helm, one, rendered, rendered_text,
                                template, tool)

KUBE_VERSIONS = ("1.27.0", "1.37.0")  # the chart's kubeVersion floor and the newest schemas shipped
CORE_KINDS = {"ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount"}
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_helm_lint(profile):
    r = helm("lint", "--strict", str(CHART), *PROFILES[profile].args)
    assert "1 chart(s) linted, 0 chart(s) failed" in r.stdout


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_renders_the_expected_objects(profile):
    kinds = sorted(o["kind"] for o in rendered(profile))
    expected = ["ConfigMap", "ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                "PrometheusRule", "ScaledObject", "Service", "ServiceAccount", "ServiceMonitor"]
    if profile == "secure":
        expected = sorted(expected + ["TriggerAuthentication"])
    assert kinds == expected


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_core_objects_pass_the_kubernetes_schemas(profile, version):
    core = [o for o in rendered(profile) if o["kind"] in CORE_KINDS]
    assert {o["kind"] for o in core} == CORE_KINDS
    for obj in core:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: {e.message} at {list(e.path)}")


def test_the_schema_check_rejects_a_misspelt_field():
    dep = copy.deepcopy(one(rendered("cpu"), "Deployment"))
    dep["spec"]["template"]["spec"]["terminationGracePeriod"] = 60  # the real field ends in "Seconds"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, KUBE_VERSIONS[-1], strict=True)


def crdcheck(stream: str) -> tuple[int, list[dict]]:
    r = subprocess.run([tool("crdcheck")], input=stream, capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, [json.loads(line) for line in r.stdout.splitlines()]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_custom_resources_decode_strictly_into_the_upstream_go_types(profile):
    rc, results = crdcheck(rendered_text(profile))
    checked = {r["kind"] for r in results if r["checked"]}
    assert checked == {o["kind"] for o in rendered(profile)} & CUSTOM_KINDS
    assert [r for r in results if r.get("error")] == [] and rc == 0


@pytest.mark.parametrize("mutate, message", [
    (lambda so: so["spec"]["triggers"][0].__setitem__("authRef", {"name": "x"}), "unknown field"),
    (lambda so: so["spec"].__setitem__("maxReplicaCount", "twelve"), "cannot unmarshal"),
    (lambda so: so["spec"].update(minReplicaCount=5, maxReplicaCount=2), "MinReplicaCount=5 must be less than MaxReplicaCount=2"),
])
def test_crdcheck_rejects_bad_scaled_objects(mutate, message):
    so = copy.deepcopy(one(rendered("cpu"), "ScaledObject"))
    mutate(so)
    rc, results = crdcheck(yaml.safe_dump(so))
    assert rc == 1 and message in results[0]["error"], results


def test_crdcheck_rejects_a_misspelt_service_monitor_field():
    sm = copy.deepcopy(one(rendered("cpu"), "ServiceMonitor"))
    sm["spec"]["endpoints"][0]["scrapeInterval"] = "30s"  # the field is "interval"
    rc, results = crdcheck(yaml.safe_dump(sm))
    assert rc == 1 and "unknown field" in results[0]["error"]


def crd_schema(crd_file: str) -> dict:
    """The served version's openAPIV3Schema from KEDA's CRD, made strict like the API server's
    structural pruning would be silent: where a schema lists properties and does not preserve
    unknown fields, anything else is an error."""
    crd = yaml.safe_load((CRDS / crd_file).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["served"] and v["storage"])
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])

    def strict(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for v in node.values():
                strict(v)
        elif isinstance(node, list):
            for v in node:
                strict(v)
        return node

    return strict(schema)


@pytest.mark.parametrize("kind, crd_file", [("ScaledObject", "keda.sh_scaledobjects.yaml"),
                                             ("TriggerAuthentication", "keda.sh_triggerauthentications.yaml")])
def test_keda_objects_match_the_crd_schema(kind, crd_file):
    assert (CRDS / crd_file).is_file(), f"{CRDS / crd_file} missing: run `make setup` (deploy/tools/install)"
    schema = crd_schema(crd_file)
    objs = [o for p in PROFILES for o in rendered(p) if o["kind"] == kind]
    assert objs
    for obj in objs:
        jsonschema.validate(obj, schema)
    bad = copy.deepcopy(objs[0])
    bad["spec"]["unknownField"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@pytest.mark.parametrize("prop", WORKER_OWNED_KAFKA)
def test_chart_refuses_the_kafka_settings_the_worker_owns(prop):
    r = template("--set-string", f"kafka.config.{prop.replace('.', chr(92) + '.')}=false", check=False)
    assert r.returncode != 0 and f"kafka.config.{prop} cannot be set" in r.stderr


def test_chart_refuses_more_workers_than_partitions():
    r = template("--set", "autoscaling.maxReplicas=13", "--set", "settings.topic_partitions=12", check=False)
    assert r.returncode != 0 and "exceeds settings.topic_partitions (12)" in r.stderr


def test_gpu_profile_demands_a_measured_throughput():
    r = template("-f", str(CHART / "values-gpu.yaml"), check=False)
    assert r.returncode != 0 and "autoscaling.imagesPerSecondPerWorker is required" in r.stderr
    assert "make bench" in r.stderr


def test_network_policy_refuses_an_allow_all_rule():
    r = template("--set", "networkPolicy.kafka.to=null", check=False)
    assert r.returncode != 0 and "networkPolicy.kafka needs both 'to' and 'ports'" in r.stderr


def test_disabled_extras_render_nothing_for_them():
    r = template("--set", "autoscaling.enabled=false", "--set", "serviceMonitor.enabled=false",
                 "--set", "prometheusRule.enabled=false", "--set", "dashboard.enabled=false",
                 "--set", "networkPolicy.enabled=false", "--set", "podDisruptionBudget.enabled=false")
    objs = [o for o in yaml.safe_load_all(r.stdout) if o]
    assert sorted(o["kind"] for o in objs) == ["ConfigMap", "ConfigMap", "Deployment", "Service", "ServiceAccount"]
    assert one(objs, "Deployment")["spec"]["replicas"] == 2  # fixed replicaCount without KEDA


@pytest.mark.parametrize("setting, where", [("autoscaling.lagThreshold=zz", "/autoscaling/lagThreshold"),
                                             ("image.variant=rocm", "/image/variant"),
                                             ("autoscaling.imagesPerSecondPerWorker=0", "/autoscaling/imagesPerSecondPerWorker")])
def test_values_schema_refuses_bad_chart_values(setting, where):
    r = template("--set", setting, check=False)
    assert r.returncode != 0 and where in r.stderr
