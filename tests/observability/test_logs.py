"""Logs: one JSON object per line with ids, stage, outcome and timings; no image bytes, no
secrets (a SASL password given as IMAGEGATE_KAFKA__sasl.password never appears)."""

from __future__ import annotations

import json
import logging
import secrets

import pytest

from consumer import logs
from producer_tools.publish import make_event


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger(logs.EVENTS_LOGGER).level)
    yield
    root.handlers[:], lvl, ev = saved
    root.setLevel(lvl)
    logging.getLogger(logs.EVENTS_LOGGER).setLevel(ev)


def fmt(secret_values=(), **extra) -> dict:
    rec = logging.makeLogRecord({"name": "t", "levelno": logging.INFO, "levelname": "INFO", "msg": extra.pop("msg", "hi"),
                                 "args": (), **extra})
    line = logs.JsonFormatter(secret_values).format(rec)
    assert "\n" not in line
    return json.loads(line)


def test_line_carries_ids_stage_outcome_timings():
    out = fmt(event_id="e1", image_id="i1", stage="done", outcome="accept", timings={"fetch_ms": 1.5})
    assert out["msg"] == "hi" and out["level"] == "info" and out["ts"].endswith("Z")
    assert (out["event_id"], out["image_id"], out["stage"], out["outcome"], out["timings"]) == ("e1", "i1", "done", "accept", {"fetch_ms": 1.5})


def test_bytes_are_never_written_only_their_length():
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    out = fmt(data=png, nested={"body": png, "list": [png]})
    assert out["data"] == f"<{len(png)} bytes>" and out["nested"] == {"body": f"<{len(png)} bytes>", "list": [f"<{len(png)} bytes>"]}


def test_secret_keys_and_configured_secret_values_are_redacted():
    pw = 'hunter2-"quoted"\\x'
    out = fmt([pw], msg=f"connecting with {pw}", conf={"sasl.password": "other-secret", "sasl.username": "u"},
              ssl_key_password="k3y-value", error=f"auth failed for {pw}")
    text = json.dumps(out)
    assert "hunter2" not in text and "other-secret" not in text and "k3y-value" not in text
    assert out["conf"] == {"sasl.password": "[redacted]", "sasl.username": "u"} and out["ssl_key_password"] == "[redacted]"
    assert out["msg"] == "connecting with [redacted]" and out["error"] == "auth failed for [redacted]"
    try:
        raise RuntimeError(f"bad password {pw}")
    except RuntimeError:
        import sys
        rec = logging.makeLogRecord({"msg": "x", "exc_info": sys.exc_info()})
        assert "hunter2" not in logs.JsonFormatter([pw]).format(rec)


def test_secret_values_come_from_kafka_passthrough_and_urls():
    got = logs.secret_values({"sasl.password": "p1", "ssl.key.password": "p2", "sasl.username": "me",
                              "sasl.oauthbearer.client.secret": "p3", "bootstrap.servers": "b:9092"},
                             ["redis://:p4@h:6379/0", "redis://h:6379/0"])
    assert sorted(got) == ["p1", "p2", "p3", "p4"]


def test_per_event_lines_can_be_switched_off_and_follow_the_root_level(restore_logging, capsys):
    ev = logging.getLogger(logs.EVENTS_LOGGER)
    logs.setup("INFO", events=True)
    ev.info("event done", extra={"event_id": "a"})
    logs.setup("INFO", events=False)
    ev.info("event done", extra={"event_id": "b"})
    ev.warning("still shown", extra={"event_id": "c"})
    logs.setup("WARNING", events=True)
    ev.info("event done", extra={"event_id": "d"})
    ids = [json.loads(x)["event_id"] for x in capsys.readouterr().err.splitlines()]
    assert ids == ["a", "c"]


def test_log_events_setting_is_validated(monkeypatch):
    from consumer.config import ConfigError, load_settings

    assert load_settings().log_events is True
    monkeypatch.setenv("IMAGEGATE_LOG_EVENTS", "false")
    assert load_settings().log_events is False
    monkeypatch.setenv("IMAGEGATE_LOG_EVENTS", "sometimes")
    with pytest.raises(ConfigError, match="IMAGEGATE_LOG_EVENTS"):
        load_settings()


@pytest.mark.integration
def test_worker_log_is_json_per_event_and_never_contains_the_sasl_password(pipeline, origin):
    password = "pw-" + secrets.token_hex(12)
    w = pipeline.worker(**{"IMAGEGATE_KAFKA__sasl.username": "imagegate", "IMAGEGATE_KAFKA__sasl.password": password,
                           "IMAGEGATE_KAFKA__debug": "conf",  # librdkafka dumps its configuration at start
                           "IMAGEGATE_LOG_LEVEL": "DEBUG"}).start()
    out = pipeline.collector()
    events = [make_event(f"{origin.url}/img/s0-sharp.jpg", image_id="log-a"),
              make_event(f"{origin.url}/img/nope.jpg", image_id="log-b")]
    pipeline.publish(events)
    pipeline.publish_raw([b'{"event_id": "not-valid"}'])
    assert out.wait_for({e.event_id for e in events}, 60) == set(), w.log_tail()
    while len(out.dlq) < 1:
        out.poll(0.5)
    assert w.stop() == 0
    text = w.log_path.read_text()
    assert password not in text
    assert "sasl.password" in text  # the configuration dump did happen (redacted by librdkafka or by us)
    records = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    done = {r["event_id"]: r for r in records if r["msg"] == "event done" and r.get("event_id")}
    a, b = done[events[0].event_id], done[events[1].event_id]
    assert a["image_id"] == "log-a" and a["stage"] == "done" and a["outcome"] in ("accept", "demote", "reject")
    assert {"fetch_ms", "decode_ms", "inference_ms", "total_ms", "acked_ms"} <= set(a["timings"])
    assert b["outcome"] == "reject" and b["reasons"] == ["fetch_failed"]
    assert any(r["msg"] == "event done" and r["outcome"] == "dlq" for r in records)
    assert any(r["msg"] == "event sent to DLQ" and r["stage"] == "validate" for r in records)
