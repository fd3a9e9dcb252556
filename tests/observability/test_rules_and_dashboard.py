"""Prometheus rules and the Grafana dashboard query exactly what the worker exports, are
valid for the real tools (promtool), and every alert is unit-tested and has a runbook."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.observability.promql import (DASHBOARD, OPERATIONS, RULES, RULES_TEST, concrete, dashboard_targets,
                                        exported_series_names, metric_names, promtool, rule_entries)


@pytest.fixture(scope="module")
def tool() -> str:
    return promtool()


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_series_names()


def recorded() -> set[str]:
    return {e["name"] for e in rule_entries() if e["kind"] == "record"}


def alerts() -> list[dict]:
    return [e for e in rule_entries() if e["kind"] == "alert"]


def test_promtool_check_rules(tool):
    r = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    n = len(rule_entries())
    assert f"SUCCESS: {n} rules found" in r.stdout  # our line parser saw every rule promtool saw


def test_promtool_unit_tests_pass(tool):
    r = subprocess.run([tool, "test", "rules", RULES_TEST.name], cwd=RULES_TEST.parent, capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_every_alert_has_a_firing_and_a_silent_unit_test():
    lines = RULES_TEST.read_text().splitlines()
    firing, silent = set(), set()
    for i, line in enumerate(lines):
        m = re.match(r"\s*alertname: (\S+)", line)
        if not m:
            continue
        nxt = lines[i + 1].strip()
        if nxt == "exp_alerts: []":
            silent.add(m.group(1))
        elif nxt == "exp_alerts:" and lines[i + 2].strip().startswith("- exp_labels:"):
            firing.add(m.group(1))
    names = {a["name"] for a in alerts()}
    assert len(names) >= 8
    assert names - firing == set(), "alerts without a firing test"
    assert names - silent == set(), "alerts without a not-firing test"


def test_every_alert_has_summary_description_and_a_runbook_entry():
    headings = {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), re.M)}
    for a in alerts():
        ann = a["annotations"]
        assert ann.get("summary") and ann.get("description"), a["name"]
        url = ann.get("runbook_url", "")
        assert url.startswith("docs/operations.md#"), (a["name"], url)
        assert url.split("#", 1)[1] == a["name"].lower() and a["name"].lower() in headings, f"no runbook entry for {a['name']}"


def test_rules_query_only_exported_metrics(exported):
    known = exported | recorded() | {"up"}
    for e in rule_entries():
        names = metric_names(e["expr"])
        assert names, e
        assert names <= known, (e["name"], names - known)


def test_dashboard_is_an_importable_model_with_a_prometheus_datasource_variable():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = set()
    for p in dash["panels"]:
        assert p["id"] not in ids
        ids.add(p["id"])
        assert set(p["gridPos"]) == {"h", "w", "x", "y"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"], p["title"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${datasource}" and t["refId"]


def test_dashboard_queries_only_exported_metrics(exported):
    known = exported | recorded() | {"up"}
    targets = dashboard_targets()
    assert len(targets) >= 30
    used = set()
    for title, expr in targets:
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= known, (title, names - known)
        used |= names
    # The views the dashboard promises (throughput, lag, per-stage latency, batch size,
    # decisions/reasons, score drift, cache, errors/DLQ, saturation) are all there.
    for must in ["imagegate_events_consumed_total", "imagegate_events_scored_total", "imagegate_consumer_lag_messages",
                 "imagegate_fetch_duration_seconds_bucket", "imagegate_decode_duration_seconds_bucket",
                 "imagegate_queue_duration_seconds_bucket", "imagegate_inference_duration_seconds_bucket",
                 "imagegate_end_to_end_duration_seconds_bucket", "imagegate_batch_size_bucket", "imagegate_decisions_total",
                 "imagegate_reasons_total", "imagegate_score_bucket", "imagegate_cache_requests_total",
                 "imagegate_events_dlq_total", "imagegate_in_flight_events", "imagegate_max_in_flight_events",
                 "imagegate_consumer_paused", "imagegate_model_info"]:
        assert must in used, must


def test_dashboard_queries_are_valid_promql(tool, tmp_path):
    """promtool parses each query (Grafana variables filled in) as a recording rule."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, expr) in enumerate(dashboard_targets()):
        lines += [f"      - record: dashboard:q{i}", "        expr: " + json.dumps(concrete(expr))]
    f = tmp_path / "dashboard.rules.yml"
    f.write_text("\n".join(lines) + "\n")
    r = subprocess.run([tool, "check", "rules", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_promql_name_extraction_is_not_vacuous():
    e = ('histogram_quantile(0.99, sum by (le) (rate(imagegate_fetch_duration_seconds_bucket{job=~"$job", outcome="ok"}'
         '[$__rate_interval]))) / on (job) group_left imagegate:x:y offset 5m')
    assert metric_names(e) == {"imagegate_fetch_duration_seconds_bucket", "imagegate:x:y"}
    assert metric_names('time() - imagegate_last_progress_timestamp_seconds > 120') == {"imagegate_last_progress_timestamp_seconds"}


def test_example_prometheus_config_is_valid_and_loads_the_rules(tool):
    cfg = RULES.parent / "prometheus.example.yml"
    r = subprocess.run([tool, "check", "config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS: 1 rule files found" in r.stdout, r.stdout + r.stderr
    assert "job_name: imagegate" in cfg.read_text()
