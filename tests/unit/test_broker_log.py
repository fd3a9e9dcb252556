"""Quiet when the broker is down (issue 23): one line per change of reachability and a
periodic summary, instead of a line per failed connection attempt (~42/s before).

A fake clock drives `BrokerLog`; the error callback is the loop's own (`KafkaLoop._on_error`)
fed with the KafkaErrors librdkafka reports while the broker is away.
"""

from __future__ import annotations

import logging
import threading

import pytest
from confluent_kafka import KafkaError

from consumer.broker_log import BrokerLog, ClientLog

RATE = 42  # reports a second with the broker down, measured on the worker before this change


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def lines(caplog, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


@pytest.fixture
def broker():
    clock = Clock()
    return BrokerLog(logging.getLogger("test.broker"), summary_every_s=60, clock=clock), clock


def fail_for(b: BrokerLog, clock: Clock, seconds: int, rate: int = RATE) -> None:
    for _ in range(seconds):
        for _ in range(rate):
            b.failed("127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused")
        clock.t += 1
        b.tick()


def test_one_line_down_a_summary_a_minute_and_one_line_back(caplog, broker):
    b, clock = broker
    caplog.set_level(logging.INFO)
    fail_for(b, clock, 150)  # 6300 reports in 2.5 minutes
    b.ok()
    got = [(r.levelname, r.getMessage()) for r in lines(caplog, "test.broker")]
    assert got == [
        ("WARNING", "kafka broker unreachable; further connection errors are summarised"),
        ("WARNING", f"kafka broker still unreachable for 60s, {RATE * 60 - 1} errors suppressed"),
        ("WARNING", f"kafka broker still unreachable for 120s, {RATE * 60} errors suppressed"),
        ("INFO", "kafka broker reachable again"),
    ]
    back = lines(caplog, "test.broker")[-1]
    assert back.down_for_s == 150 and back.errors_suppressed == RATE * 30
    assert "Connection refused" in lines(caplog, "test.broker")[0].error


def test_a_second_outage_is_reported_again(caplog, broker):
    b, clock = broker
    caplog.set_level(logging.INFO)
    fail_for(b, clock, 5)
    b.ok()
    b.ok()  # already up: nothing to say
    fail_for(b, clock, 5)
    msgs = [r.getMessage() for r in lines(caplog, "test.broker")]
    assert msgs == ["kafka broker unreachable; further connection errors are summarised", "kafka broker reachable again",
                    "kafka broker unreachable; further connection errors are summarised"]


def test_the_summary_comes_on_time_when_reports_stop_and_at_shutdown(caplog, broker):
    b, clock = broker
    caplog.set_level(logging.INFO)
    fail_for(b, clock, 1, rate=3)
    clock.t += 59
    b.tick()  # no new report: the poll loop's tick alone brings the summary
    clock.t += 10
    b.close()  # still down at shutdown: the last words say so
    msgs = [r.getMessage() for r in lines(caplog, "test.broker")]
    assert msgs[1:] == ["kafka broker still unreachable for 60s, 2 errors suppressed",
                        "kafka broker still unreachable for 70s, 0 errors suppressed"]


def test_reports_from_two_threads_are_all_counted(caplog, broker):
    b, clock = broker
    caplog.set_level(logging.INFO)
    b.failed("first")
    threads = [threading.Thread(target=lambda: [b.failed("x") for _ in range(5000)]) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    b.close()
    assert lines(caplog, "test.broker")[-1].errors_suppressed == 10_000


def test_librdkafka_fail_lines_are_counted_only_while_down(caplog, broker):
    b, clock = broker
    kafka = logging.getLogger("test.kafka")
    client = ClientLog(b, kafka)
    caplog.set_level(logging.DEBUG)
    fail = ("FAIL", "rdkafka#consumer-1", "[thrd:x]: 127.0.0.1:1/bootstrap: Connect failed: Connection refused")
    client.log(logging.ERROR, "%s [%s] %s", *fail)  # not known down yet: an ordinary line
    b.failed("transport error")  # the error callback says the broker is down
    for _ in range(100):
        client.log(logging.ERROR, "%s [%s] %s", *fail)
    client.log(logging.WARNING, "%s [%s] %s", "SASL", "rdkafka#consumer-1", "authentication failed")
    assert [r.getMessage().split(" ")[0] for r in lines(caplog, "test.kafka")] == ["FAIL", "SASL"]
    b.close()
    assert lines(caplog, "test.broker")[-1].errors_suppressed == 100


def test_the_loops_error_callback_logs_an_outage_once_and_other_errors_each_time(caplog, monkeypatch):
    from consumer.health import Health
    from consumer.loop import KafkaLoop
    from tests.harness import free_port

    monkeypatch.setenv("IMAGEGATE_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")  # nothing listens
    from consumer.config import load_settings

    health = Health(stall_after_s=30)
    loop = KafkaLoop(load_settings(), None, None, None, health, threading.Event(), lambda: 0)  # type: ignore[arg-type]
    try:
        caplog.set_level(logging.INFO, logger="imagegate.loop")
        caplog.clear()
        for _ in range(RATE * 10):
            loop._on_error(KafkaError(KafkaError._TRANSPORT, "127.0.0.1:1/bootstrap: Connect failed: Connection refused"))
            loop._on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        assert health.broker_ok is False
        for _ in range(3):
            loop._on_error(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED, "bad credentials"))
        msgs = [r.getMessage() for r in lines(caplog, "imagegate.loop")]
        assert msgs == ["kafka broker unreachable; further connection errors are summarised"] + ["kafka client error"] * 3
        loop._on_stats('{"brokers": {"b1": {"state": "UP"}}}')
        assert health.broker_ok is True and lines(caplog, "imagegate.loop")[-1].getMessage() == "kafka broker reachable again"
    finally:
        loop.consumer.close()


def test_the_producers_error_callback_counts_outages_and_logs_other_errors(caplog, broker):
    b, clock = broker
    caplog.set_level(logging.INFO)
    for _ in range(50):
        b.client_error(KafkaError(KafkaError._TRANSPORT, "127.0.0.1:1/bootstrap: Connect failed"))
    b.client_error(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "not allowed"))
    assert [r.getMessage() for r in lines(caplog, "test.broker")] == [
        "kafka broker unreachable; further connection errors are summarised"]
    assert [r.error for r in lines(caplog, "imagegate.kafka")] == [str(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "not allowed"))]
    b.close()
    assert lines(caplog, "test.broker")[-1].errors_suppressed == 49
