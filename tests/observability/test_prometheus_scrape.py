"""A real Prometheus server scrapes a real worker (1 s interval) with the shipped rules
loaded; the counters read back through Prometheus' HTTP API match what was pushed, every
rule evaluates cleanly on the real series, every dashboard query runs, and the live
exposition passes `promtool check metrics`."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from producer_tools.publish import make_event
from tests.harness import free_port
from tests.observability.promql import RULES, concrete, dashboard_targets, promtool

pytestmark = pytest.mark.integration


class Prometheus:
    def __init__(self, tmp, target_port: int):
        self.port = free_port()
        self.tmp = tmp
        shutil.copy(RULES, tmp / "imagegate.rules.yml")
        (tmp / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files:\n  - imagegate.rules.yml\n"
            "scrape_configs:\n  - job_name: imagegate\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n")
        exe = shutil.which("prometheus")
        if exe is None:
            promtool()  # installs the prometheus package via the stack when missing
            exe = shutil.which("prometheus")
        assert exe, "prometheus server missing"
        self.log = open(tmp / "prometheus.log", "wb")
        self.proc = subprocess.Popen([exe, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (tmp / "prometheus.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("prometheus not ready")

    def api(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def value(self, expr: str) -> float | None:
        res = self.query(expr)
        return float(res[0]["value"][1]) if res else None

    def wait_value(self, expr: str, want: float, timeout: float = 30) -> float | None:
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.value(expr)
            if got == want:
                return got
            time.sleep(0.5)
        return got

    def wait_series(self, expr: str, timeout: float = 15) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            res = self.query(expr)
            if res or time.monotonic() > deadline:
                return res
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def test_prometheus_scrapes_the_worker_and_counters_match_what_was_pushed(pipeline, origin, images, tmp_path):
    w = pipeline.worker(IMAGEGATE_MAX_BATCH_SIZE="4").start()
    prom = Prometheus(tmp_path, w.port)
    try:
        assert prom.wait_value('up{job="imagegate"}', 1) == 1, (tmp_path / "prometheus.log").read_text()
        names = sorted(p.name for p in images.iterdir())
        good = [make_event(f"{origin.url}/img/{names[i % len(names)]}", image_id=f"prom-{i}") for i in range(20)]
        unreachable = make_event(f"{origin.url}/img/does-not-exist.jpg", image_id="prom-404")
        out = pipeline.collector()
        pipeline.publish(good + [unreachable])
        pipeline.publish_raw([b"not json", b'{"event_id": 1}'])
        ids = {e.event_id for e in good} | {unreachable.event_id}
        assert out.wait_for(ids, 120, w.alive) == set(), w.log_tail()
        while len(out.dlq) < 2:
            out.poll(0.5)
        n_scored, n_dlq = len(out.scored), len(out.dlq)
        assert (n_scored, n_dlq) == (21, 2)

        # What Prometheus stored equals what went through the topics.
        j = '{job="imagegate"}'
        assert prom.wait_value(f"sum(imagegate_events_scored_total{j})", n_scored) == n_scored
        assert prom.wait_value(f"sum(imagegate_events_dlq_total{j})", n_dlq) == n_dlq
        assert prom.wait_value(f"sum(imagegate_events_consumed_total{j})", n_scored + n_dlq) == n_scored + n_dlq
        assert prom.value(f"sum(imagegate_events_invalid_total{j})") == 2
        assert prom.value(f'sum(imagegate_events_dlq_total{{job="imagegate", stage="validate"}})') == 2
        decisions = {r["metric"]["decision"]: float(r["value"][1])
                     for r in prom.query(f"sum by (decision) (imagegate_decisions_total{j})")}
        assert decisions == {d: float(sum(b["decision"] == d for b in out.scored)) for d in ("accept", "demote", "reject")}
        cached = sum(b["cached"] for b in out.scored)
        assert prom.value(f'sum(imagegate_events_scored_total{{job="imagegate", cached="true"}})') == cached
        assert prom.value(f'sum(imagegate_reasons_total{{job="imagegate", code="fetch_failed"}})') == 1
        assert prom.value(f"sum(imagegate_score_count{j})") == n_scored
        assert prom.value(f"sum(imagegate_score_sum{j})") == pytest.approx(sum(b["score"] for b in out.scored))
        assert prom.value(f"sum(imagegate_end_to_end_duration_seconds_count{j})") == n_scored + n_dlq
        inferred = prom.value(f"sum(imagegate_images_inferred_total{j})")
        assert inferred == w.metric("imagegate_images_inferred_total") and 1 <= inferred <= 20
        assert prom.value(f"sum(imagegate_batch_size_sum{j})") == inferred
        assert prom.value(f'sum(imagegate_fetch_duration_seconds_count{{job="imagegate", outcome="error"}})') == 1
        assert prom.value(f"imagegate_max_in_flight_events{j}") == pipeline.settings.max_in_flight
        assert prom.value(f"imagegate_assigned_partitions{j}") == 4
        assert prom.query(f"imagegate_model_info{j}")[0]["metric"]["model_name"] == "random-plumbing-only"
        assert prom.value(f"process_resident_memory_bytes{j}") > 0
        # Lag per partition from librdkafka statistics (every 5 s): 4 series, drained to 0.
        assert prom.wait_value(f"count(imagegate_consumer_lag_messages{j})", 4) == 4
        assert prom.wait_value(f"sum(imagegate_consumer_lag_messages{j})", 0) == 0

        # The shipped rules evaluate cleanly on real series; recording rules produce data.
        groups = prom.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        in_file = sum(line.lstrip().startswith(("- record:", "- alert:")) for line in RULES.read_text().splitlines())
        assert len(rules) == in_file and all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
        for name in ("imagegate:events_consumed:rate5m", "imagegate:events_scored:rate5m", "imagegate:score:mean1h",
                     "imagegate:end_to_end_duration_seconds:p99_5m", "imagegate:consumer_lag_messages:sum"):
            assert prom.wait_series(f'{name}{{job="imagegate"}}'), f"recording rule {name} has no data"
        # Alerts: none should be firing on a healthy pipeline.
        assert [a for a in prom.api("alerts")["alerts"] if a["state"] == "firing"] == []

        # Every dashboard query runs against the real data and returns series (GPU memory
        # only exists when the model is on CUDA).
        empty = [(title, expr) for title, expr in dashboard_targets()
                 if not prom.query(concrete(expr, rate_interval="1m")) and "imagegate_gpu_" not in expr]
        assert empty == []

        # The live exposition passes promtool's lint.
        code, text = w.http("/metrics")
        r = subprocess.run([promtool(), "check", "metrics"], input=text.encode(), capture_output=True)
        assert code == 200 and r.returncode == 0, (r.stdout + r.stderr).decode()
        assert w.http("/healthz")[0] == 200 and w.http("/readyz")[0] == 200
    finally:
        prom.stop()
    assert w.stop() == 0
