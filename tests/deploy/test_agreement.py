"""What the chart and the compose file say agrees with what the worker reads: every variable
they set is a setting the worker accepts (loaded through the worker's own `load_settings`),
ports and paths are the ones the worker serves, topic and group names and the partition cap
match, the drain fits in the grace period, and every metric the monitoring objects query is
one the worker exports. Names are read from the code at test time, never copied here."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.tools import (CHART, COMPOSE, DASHBOARD, DOCKERFILE, POD_NAME, PROFILES, PROMETHEUS_EXAMPLE, REPO,
                                RULES, WORKER_OWNED_KAFKA, chart_env, exported_metric_names, image_env, one, rendered,
                                secret_files, settings_fields, worker_container)
from tests.observability.promql import metric_names

SECRET_VALUES = {"url": "rediss://imagegate:s3cret@redis.example:6380/0", "username": "imagegate", "password": "s3cret"}


def container_env(objects, tmp_path: Path) -> dict[str, str]:
    """The environment the worker container starts with: the ConfigMap (envFrom), then env
    entries (downward API -> the pod name). Secrets are files: the projected Secret volume is
    written with sample values under tmp_path and IMAGEGATE_SECRETS_DIR pointed there. The policy
    file is written where the pod would mount it (tmp_path stands in for the mount directory)."""
    c = worker_container(objects)
    env = chart_env(objects)
    assert all("secretKeyRef" not in e.get("valueFrom", {}) for e in c.get("env", [])), \
        "secrets must reach the worker as files, not environment variables"
    mounted = secret_files(objects, tmp_path / "secret-volumes", SECRET_VALUES)
    if "IMAGEGATE_SECRETS_DIR" in env:
        env["IMAGEGATE_SECRETS_DIR"] = str(mounted[env["IMAGEGATE_SECRETS_DIR"]])
    mount = next(m for m in c["volumeMounts"] if m["name"] == "policy")
    assert Path(env["IMAGEGATE_POLICY_FILE"]).parent == Path(mount["mountPath"])
    policy = one(objects, "ConfigMap", "-policy")["data"][Path(env["IMAGEGATE_POLICY_FILE"]).name]
    (tmp_path / "policy.json").write_text(policy)
    env["IMAGEGATE_POLICY_FILE"] = str(tmp_path / "policy.json")
    return env


def load_with_env(monkeypatch, env: dict[str, str]):
    """The worker's own loader, on exactly this environment."""
    import os

    from consumer.config import load_settings

    for k in list(os.environ):
        if k.startswith("IMAGEGATE_"):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return load_settings()


def setting_name(var: str) -> str | None:
    """IMAGEGATE_FOO_BAR -> foo_bar; None for librdkafka passthrough variables."""
    assert var.startswith("IMAGEGATE_"), var
    if var.startswith("IMAGEGATE_KAFKA__"):
        return None
    return var[len("IMAGEGATE_"):].lower()


@pytest.fixture(params=sorted(PROFILES))
def profile(request):
    return request.param


def test_every_variable_is_a_worker_setting_and_the_worker_accepts_them(profile, tmp_path, monkeypatch):
    objects = rendered(profile)
    env = container_env(objects, tmp_path)
    fields = settings_fields()
    unknown = {v for v in env if setting_name(v) is not None and setting_name(v) not in fields}
    assert unknown == set(), f"the chart sets variables the worker does not read: {sorted(unknown)}"
    owned = {v for v in env if v.startswith("IMAGEGATE_KAFKA__") and v[len("IMAGEGATE_KAFKA__"):] in WORKER_OWNED_KAFKA}
    assert owned == set()

    s = load_with_env(monkeypatch, env)  # raises ConfigError listing anything the worker refuses
    values = yaml.safe_load((CHART / "values.yaml").read_text())["settings"]
    if profile == "gpu":
        values |= yaml.safe_load((CHART / "values-gpu.yaml").read_text())["settings"]
    for name, value in values.items():
        if name == "redis_url" and profile == "secure":
            assert s.redis_url == SECRET_VALUES["url"]  # from the Secret, not the values file
            continue
        got = getattr(s, name)
        assert (got if not isinstance(got, Path) else str(got)) == value, name
    if profile == "secure":
        assert s.kafka["sasl.username"] == "imagegate" and s.kafka["security.protocol"] == "SASL_SSL"
        assert s.kafka["sasl.password"] == SECRET_VALUES["password"]
        assert "IMAGEGATE_KAFKA__sasl.password" not in env and "IMAGEGATE_REDIS_URL" not in env  # files only
        assert s.kafka["ssl.ca.location"].startswith("/etc/imagegate/kafka-tls/")
        assert s.topic_backfill == "image_uploaded.backfill"


def test_static_membership_from_the_pod_name(tmp_path, monkeypatch):
    assert "group_instance_id" in settings_fields(), "the worker has no static membership setting"
    s = load_with_env(monkeypatch, container_env(rendered("cpu"), tmp_path))
    assert s.group_instance_id == POD_NAME


def test_policy_configmap_is_the_bundled_policy_by_default(tmp_path, monkeypatch):
    from consumer.config import DEFAULT_POLICY_FILE
    from consumer.policy import Policy

    data = one(rendered("cpu"), "ConfigMap", "-policy")["data"]["policy.json"]
    assert json.loads(data) == json.loads(DEFAULT_POLICY_FILE.read_text())
    path = tmp_path / "policy.json"
    path.write_text(data)
    Policy.from_file(path, "default")  # the worker can load what the pod mounts


def test_ports_and_paths_are_the_ones_the_worker_serves(profile, tmp_path, monkeypatch):
    objects = rendered(profile)
    s = load_with_env(monkeypatch, container_env(objects, tmp_path))
    served = set(re.findall(r'"(/[a-z]+)"', (REPO / "consumer" / "metrics.py").read_text()))
    assert {"/metrics", "/healthz", "/readyz"} <= served
    c = worker_container(objects)
    (port,) = c["ports"]
    assert port["containerPort"] == s.metrics_port
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] == port["name"]
    svc = one(objects, "Service")
    assert svc["spec"]["ports"][0]["port"] == s.metrics_port and svc["spec"]["ports"][0]["targetPort"] == port["name"]
    sm = one(objects, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    np_ingress = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert [p["port"] for rule in np_ingress for p in rule["ports"]] == [port["name"]]


def test_termination_grace_exceeds_the_worst_drain(profile, tmp_path, monkeypatch):
    objects = rendered(profile)
    s = load_with_env(monkeypatch, container_env(objects, tmp_path))
    grace = one(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= math.ceil(s.shutdown_timeout_s + s.revoke_timeout_s) + 10


def test_grace_follows_a_longer_shutdown_timeout():
    from tests.deploy.tools import template

    r = template("--set", "settings.shutdown_timeout_s=120")
    dep = one([o for o in yaml.safe_load_all(r.stdout) if o], "Deployment")
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120 + 10 + 15


def test_keda_trigger_watches_the_workers_group_and_topics(profile, tmp_path, monkeypatch):
    objects = rendered(profile)
    s = load_with_env(monkeypatch, container_env(objects, tmp_path))
    so = one(objects, "ScaledObject")
    assert so["spec"]["scaleTargetRef"]["name"] == one(objects, "Deployment")["metadata"]["name"]
    triggers = so["spec"]["triggers"]
    assert {t["metadata"]["topic"] for t in triggers} == {s.topic_in} | ({s.topic_backfill} if s.topic_backfill else set())
    for t in triggers:
        assert t["type"] == "kafka"
        assert t["metadata"]["consumerGroup"] == s.group_id
        assert t["metadata"]["bootstrapServers"] == s.kafka_bootstrap
        assert t["metadata"]["allowIdleConsumers"] == "false"
    assert so["spec"]["maxReplicaCount"] <= s.topic_partitions


def test_keda_counts_lag_like_the_worker_consumes():
    # A partition without a committed offset: the worker starts at auto.offset.reset, and KEDA
    # must count lag from the same place or it under-scales a fresh group.
    code = "\n".join(p.read_text() for p in (REPO / "consumer").rglob("*.py"))
    found = set(re.findall(r'"auto\.offset\.reset":\s*"(\w+)"', code))
    assert len(found) == 1, found
    (policy,) = found
    for profile in PROFILES:
        for t in one(rendered(profile), "ScaledObject")["spec"]["triggers"]:
            assert t["metadata"]["offsetResetPolicy"] == policy


def test_lag_threshold_is_throughput_times_drain_time():
    values = yaml.safe_load((CHART / "values.yaml").read_text())["autoscaling"]
    so = one(rendered("cpu"), "ScaledObject")
    expected = math.floor(values["imagesPerSecondPerWorker"] * values["targetDrainSeconds"])
    assert {t["metadata"]["lagThreshold"] for t in so["spec"]["triggers"]} == {str(expected)}
    assert f"= {expected} messages per worker" in so["metadata"]["annotations"]["imagegate.io/lag-threshold"]
    readme = (REPO / "README.md").read_text()
    assert re.search(r"plan with ~%s per 2-core worker" % int(values["imagesPerSecondPerWorker"]), readme), \
        "the CPU profile's images/s is not the README's planning figure (from the measured bench)"


def test_scale_down_is_slow_and_one_pod_at_a_time():
    behavior = one(rendered("cpu"), "ScaledObject")["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    down = behavior["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300
    assert all(p["type"] == "Pods" and p["value"] == 1 for p in down["policies"])


def test_network_policy_allows_the_configured_kafka_and_redis_ports_and_no_private_origins(tmp_path, monkeypatch):
    objects = rendered("cpu")
    s = load_with_env(monkeypatch, container_env(objects, tmp_path))
    egress = one(objects, "NetworkPolicy")["spec"]["egress"]
    assert all(rule.get("to") and rule.get("ports") for rule in egress), "an egress rule without to/ports allows all"
    ports = {p["port"] for rule in egress for p in rule["ports"]}
    kafka_port = int(s.kafka_bootstrap.rsplit(":", 1)[1])
    from urllib.parse import urlparse

    assert {53, kafka_port, urlparse(s.redis_url).port, 443} <= ports
    blocks = [peer["ipBlock"] for rule in egress for peer in rule["to"] if "ipBlock" in peer]
    assert blocks
    for addr in ("169.254.169.254", "10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "100.64.0.1",
                 "fd00:ec2::254", "fe80::1", "::1", "::ffff:10.0.0.1"):
        ip = ipaddress.ip_address(addr)
        allowed = [b for b in blocks if ip in ipaddress.ip_network(b["cidr"])
                   and not any(ip in ipaddress.ip_network(x) for x in b.get("except", []))]
        assert allowed == [], f"image-origin egress allows {addr}"
    assert any(ipaddress.ip_address("151.101.1.1") in ipaddress.ip_network(b["cidr"]) for b in blocks)


def test_scrape_job_and_monitoring_objects_match_deploy_prometheus_and_grafana():
    objects = rendered("cpu")
    rules_file = yaml.safe_load(RULES.read_text())
    assert one(objects, "PrometheusRule")["spec"] == rules_file  # built from the file, not a copy
    assert one(objects, "ConfigMap", "-dashboard")["data"]["imagegate.json"] == DASHBOARD.read_text()
    # The rules select job="imagegate"; the ServiceMonitor's jobLabel must produce exactly that.
    jobs = set(re.findall(r'job="([^"]+)"', RULES.read_text()))
    sm = one(objects, "ServiceMonitor")
    svc = one(objects, "Service")
    assert jobs == {svc["metadata"]["labels"][sm["spec"]["jobLabel"]]}
    example_jobs = {j["job_name"] for j in yaml.safe_load(PROMETHEUS_EXAMPLE.read_text())["scrape_configs"]}
    assert jobs == example_jobs


def test_runbook_links_can_be_made_absolute():
    from tests.deploy.tools import template

    r = template("--set", "prometheusRule.runbookBaseUrl=https://git.example/imagegate/blob/main/")
    rule = one([o for o in yaml.safe_load_all(r.stdout) if o], "PrometheusRule")
    urls = [x["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for x in g["rules"] if "alert" in x]
    assert urls and all(u.startswith("https://git.example/imagegate/blob/main/docs/operations.md#") for u in urls)


def test_every_metric_in_the_monitoring_objects_exists_in_the_code():
    exported = exported_metric_names()
    rule = one(rendered("cpu"), "PrometheusRule")
    entries = [x for g in rule["spec"]["groups"] for x in g["rules"]]
    recorded = {x["record"] for x in entries if "record" in x}
    known = exported | recorded | {"up"}  # `up` is Prometheus's own scrape-health series
    queried = set()
    for x in entries:
        names = metric_names(x["expr"])
        assert names, x
        queried |= names
    assert queried - known == set(), f"rules query metrics the worker does not export: {sorted(queried - known)}"
    assert any(n.startswith("imagegate_") for n in queried)


def test_the_name_check_would_catch_a_missing_metric():
    assert "imagegate_events_scored_total" in exported_metric_names()
    assert "imagegate_events_scored_totl" not in exported_metric_names()
    assert metric_names('sum(rate(imagegate_events_scored_totl{job="imagegate"}[5m]))') == {"imagegate_events_scored_totl"}


def test_chart_app_version_is_the_project_version_and_the_image_tag():
    import tomllib

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == version
    assert worker_container(rendered("cpu"))["image"] == f"imagegate-worker:{version}-cpu"
    assert worker_container(rendered("gpu"))["image"] == f"imagegate-worker:{version}-cuda"


def test_gpu_profile_requests_a_gpu_and_runs_the_model_there(tmp_path, monkeypatch):
    objects = rendered("gpu")
    c = worker_container(objects)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    s = load_with_env(monkeypatch, container_env(objects, tmp_path))
    assert s.device == "cuda"
    assert "nvidia.com/gpu" not in worker_container(rendered("cpu"))["resources"]["limits"]


# ---- compose -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_worker_settings_are_accepted_by_the_worker(compose, monkeypatch):
    env = compose["services"]["worker"]["environment"]
    fields = settings_fields()
    assert {setting_name(k) for k in env} - fields == set()
    s = load_with_env(monkeypatch, {k: str(v) for k, v in env.items()})
    kafka_init = compose["services"]["kafka-init"]
    assert kafka_init["environment"] == env  # the topics it creates are the ones the worker uses
    for var in ("IMAGEGATE_TOPIC_IN", "IMAGEGATE_TOPIC_OUT", "IMAGEGATE_TOPIC_DLQ", "IMAGEGATE_TOPIC_PARTITIONS"):
        assert f"$${var}" in kafka_init["command"][0]
    ports = compose["services"]["worker"]["ports"]
    assert f"{s.metrics_port}:{s.metrics_port}" in ports
    grace = compose["services"]["worker"]["stop_grace_period"]
    assert int(grace.rstrip("s")) >= math.ceil(s.shutdown_timeout_s + s.revoke_timeout_s) + 10


def test_compose_uses_the_charts_names_and_image(compose, tmp_path, monkeypatch):
    env = {k: str(v) for k, v in compose["services"]["worker"]["environment"].items()}
    composed = load_with_env(monkeypatch, env)
    charted = load_with_env(monkeypatch, container_env(rendered("cpu"), tmp_path))
    for name in ("group_id", "topic_in", "topic_out", "topic_dlq", "metrics_port", "shutdown_timeout_s",
                 "revoke_timeout_s"):
        assert getattr(composed, name) == getattr(charted, name), name
    worker = compose["services"]["worker"]
    assert worker["image"] == worker_container(rendered("cpu"))["image"]
    assert (COMPOSE.parent / worker["build"]["context"] / worker["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert f"AS {worker['build']['target']}" in DOCKERFILE.read_text()


def test_read_only_root_still_has_writable_caches():
    objects = rendered("gpu")
    c = worker_container(objects)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == tmp["name"])
    assert "emptyDir" in volume
    text = DOCKERFILE.read_text()
    for target in ("cpu", "cuda"):
        env = image_env(target)
        for var in ("XDG_CACHE_HOME", "TRITON_CACHE_DIR"):  # XDG_CACHE_HOME: model/export.py's ONNX graphs too
            assert Path(env[var]).is_relative_to(tmp["mountPath"]), (target, var, env[var])
        assert "IMAGEGATE_CACHE_DIR" not in env or Path(env["IMAGEGATE_CACHE_DIR"]).is_relative_to(tmp["mountPath"])
    user = int(re.search(r"^USER (\d+)", text, re.M).group(1))
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == user


def test_own_policy_file_is_mounted_and_rolls_the_workers(tmp_path):
    from consumer.config import DEFAULT_POLICY_FILE
    from consumer.policy import Policy
    from tests.deploy.tools import template

    policy = json.loads(DEFAULT_POLICY_FILE.read_text())
    policy["version"] = "2099.1.0"
    policy["profiles"]["default"]["accept_score"] = 70
    mine = tmp_path / "my-policy.json"
    mine.write_text(json.dumps(policy, indent=2))
    objects = [o for o in yaml.safe_load_all(template("--set-file", f"policy.content={mine}").stdout) if o]
    data = one(objects, "ConfigMap", "-policy")["data"]["policy.json"]
    assert json.loads(data) == policy
    mounted = tmp_path / "mounted.json"
    mounted.write_text(data)
    Policy.from_file(mounted, "default")
    checksum = lambda objs: one(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]  # noqa: E731
    assert checksum(objects) != checksum(rendered("cpu"))
