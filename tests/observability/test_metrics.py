"""The worker's metric names, types, labels and buckets follow DESIGN (Observability)."""

from __future__ import annotations

import subprocess

import pytest
import torch
from prometheus_client import REGISTRY, generate_latest

import consumer.worker  # noqa: F401 (registers everything the worker exports)
from consumer import metrics
from tests.observability.promql import promtool

PER_EVENT_LABELS = {"image_id", "event_id", "listing_id", "seller_id", "url", "content_sha256", "sha256", "offset", "key"}


def families():
    return [f for f in REGISTRY.collect() if f.name.startswith("imagegate_")]


def test_names_units_and_labels():
    fams = families()
    assert len(fams) >= 25
    for f in fams:
        if f.type == "counter":
            assert any(s.name == f.name + "_total" for s in f.samples) or not f.samples, f.name
        if f.type == "histogram":
            assert f.name.endswith("_seconds") or f.name in (
                "imagegate_batch_size", "imagegate_shadow_batch_size", "imagegate_score"), f.name
        for s in f.samples:
            assert not (set(s.labels) & PER_EVENT_LABELS), (s.name, s.labels)
            assert "milliseconds" not in s.name and not s.name.endswith("_ms")


def test_label_cardinality_is_small_and_known_values_exist_from_the_start():
    sample_names = {}
    for f in families():
        for s in f.samples:
            sample_names.setdefault(s.name, set()).add(tuple(sorted(s.labels.items())))
    assert max(len(v) for v in sample_names.values()) < 400
    # Pre-created, so rate() sees a 0 before the first event of a kind.
    def labels(name):
        return {dict(t).get(k) for t in sample_names.get(name, ()) for k in dict(t) if k not in ("le",)}
    assert {"accept", "demote", "reject"} <= labels("imagegate_decisions_total")
    assert {"validate", "fetch_decode", "inference", "consume"} <= labels("imagegate_events_dlq_total")
    assert {"hit", "miss", "error", "skipped", "ok"} <= labels("imagegate_cache_requests_total")
    assert {"fetch_failed", "low_resolution", "blurry"} <= labels("imagegate_reasons_total")


def _buckets(h) -> tuple[float, ...]:
    return tuple(b for b in h._upper_bounds if b != float("inf"))


@pytest.mark.parametrize("hist,lo,hi", [
    (metrics.FETCH_SECONDS.labels("ok"), 0.005, 30.0),
    (metrics.DECODE_SECONDS.labels("ok"), 0.001, 2.0),
    (metrics.QUEUE_SECONDS, 0.0005, 10.0),
    (metrics.INFERENCE_SECONDS, 0.001, 10.0),
    (metrics.E2E_SECONDS, 0.01, 120.0),
    (metrics.BATCH_SIZE, 1, 1024),
    (metrics.SCORE, 5, 100),
])
def test_buckets_fit_each_stage(hist, lo, hi):
    b = _buckets(hist)
    assert b[0] == lo and b[-1] == hi and list(b) == sorted(b) and len(b) >= 10


def test_process_collector_and_model_info_are_exported():
    text = generate_latest(REGISTRY).decode()
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
    assert "imagegate_model_info" in text  # declared here; test_metrics_move checks a real worker fills it


def test_gpu_memory_only_on_cuda():
    assert metrics.watch_gpu(torch.device("cpu")) is False
    text = generate_latest(REGISTRY).decode()
    if not torch.cuda.is_available():
        assert "imagegate_gpu_memory" not in text
        return
    x = torch.ones(1024, 1024, device="cuda")  # 4 MiB held
    assert metrics.watch_gpu(torch.device("cuda", 0)) is True
    assert metrics.watch_gpu(torch.device("cuda", 0)) is True  # idempotent
    from prometheus_client.parser import text_string_to_metric_families
    got = {s.name: s.value for f in text_string_to_metric_families(generate_latest(REGISTRY).decode()) for s in f.samples}
    assert got["imagegate_gpu_memory_allocated_bytes"] >= x.numel() * 4
    assert got["imagegate_gpu_memory_reserved_bytes"] >= got["imagegate_gpu_memory_allocated_bytes"]


def test_exposition_passes_promtool_check_metrics():
    r = subprocess.run([promtool(), "check", "metrics"], input=generate_latest(REGISTRY), capture_output=True)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
