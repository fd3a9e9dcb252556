"""The worker against a secured cluster: three SASL_SSL (SCRAM-SHA-512) brokers with ACLs and
Redis with TLS + ACL users, all from `deploy/local/stack start --secure` (real servers, private CA).

Fail closed: a wrong password, a CA the client does not trust, or a name the certificate does not
carry keeps the worker unready with the reason in its log and nothing committed; a principal that
may not write `image_scored` stops the worker loudly. Then one of the three brokers dies (kill -9)
mid-stream and comes back: nothing lost, nothing in the DLQ.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from producer_tools.publish import make_event

from tests.harness import Collector
from tests.security.conftest import committed, launch, make_ca, operator_settings, wait_log, worker

pytestmark = [pytest.mark.integration, pytest.mark.secure]


def publish(stack, urls: list[str], n: int) -> set[str]:
    from producer_tools.kafka_clients import producer
    from producer_tools.publish import make_event, publish as send

    settings = operator_settings(stack)
    events = [make_event(urls[i % len(urls)]) for i in range(n)]
    assert send(producer(settings), settings.topic_in, events) == n
    return {e.event_id for e in events}


def test_worker_scores_end_to_end_over_sasl_ssl_and_redis_tls(secure_stack, secure_env, origin, images, tmp_path):
    urls = [f"{origin.url}/img/s{seed}-sharp.jpg" for seed in range(3)]
    w = worker(secure_env, tmp_path / "worker.log").start()
    out = Collector(operator_settings(secure_stack))
    try:
        ids = publish(secure_stack, urls, 20)
        assert out.wait_for(ids, 120, alive=w.alive) == set(), w.log_tail()
        assert out.dlq == []
        assert w.stop() == 0
    finally:
        out.close()
        if w.alive():
            w.kill()
    # the results reached Redis over TLS as the `worker` ACL user; `operator` (read-only) reads them back
    r = redis.Redis.from_url(secure_stack.env_of("operator")["IMAGEGATE_REDIS_URL"])
    image_ids = {b["image_id"] for b in out.scored if b["source_event_id"] in ids}
    assert all(r.get(f"imagegate:image:{i}") is not None for i in image_ids)
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.set("imagegate:image:x", b"operator may not write")


def _fails_closed(secure_stack, env, tmp_path, expect: str):
    before = committed(secure_stack.kafka_conf("admin"), "imagegate")
    w = launch(worker(env, tmp_path / "worker.log"))
    try:
        assert wait_log(w, expect, 90), f"no {expect!r} in the worker log:\n{w.log_tail()}"
        time.sleep(2)  # had the worker got through anyway, /readyz would say so by now
        assert w.http("/readyz")[0] != 200
        assert w.metric("imagegate_events_consumed_total") == 0
    finally:
        w.kill()
    assert committed(secure_stack.kafka_conf("admin"), "imagegate") == before


def test_wrong_password_fails_closed(secure_stack, secure_env, tmp_path):
    env = {**secure_env, "IMAGEGATE_KAFKA__sasl.password": "not-the-password"}
    _fails_closed(secure_stack, env, tmp_path, "Authentication failed")


def test_unknown_ca_fails_closed(secure_stack, secure_env, tmp_path):
    other = make_ca(tmp_path, "someone-else-ca")  # a real CA, just not the one that signed the brokers
    env = {**secure_env, "IMAGEGATE_KAFKA__ssl.ca.location": str(other)}
    _fails_closed(secure_stack, env, tmp_path, "certificate verify failed")


def test_hostname_mismatch_fails_closed(secure_stack, secure_env, tmp_path):
    from confluent_kafka.admin import AdminClient

    # `localhost` reaches the brokers, but their certificate names only IP 127.0.0.1
    bootstrap = secure_env["IMAGEGATE_KAFKA_BOOTSTRAP"].replace("127.0.0.1", "localhost")
    _fails_closed(secure_stack, {**secure_env, "IMAGEGATE_KAFKA_BOOTSTRAP": bootstrap}, tmp_path, "certificate verify failed")
    # the control: the same name, CA and password get through once hostname verification is off, so it was the name
    conf = {**secure_stack.kafka_conf("worker"), "bootstrap.servers": bootstrap}
    assert AdminClient({**conf, "ssl.endpoint.identification.algorithm": "none"}).list_topics(timeout=30).brokers


def test_principal_without_write_on_image_scored_stops_worker_loudly(secure_stack, secure_env, origin, tmp_path):
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType,
                                       ResourceType, ScramMechanism, UserScramCredentialUpsertion, ScramCredentialInfo)

    admin = AdminClient(secure_stack.kafka_conf("admin"))
    cred = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
    for fut in admin.alter_user_scram_credentials([UserScramCredentialUpsertion("noscored", cred, b"noscored-pw")]).values():
        fut.result(timeout=30)
    grants = [(ResourceType.TOPIC, "image_uploaded", AclOperation.READ), (ResourceType.TOPIC, "image_uploaded", AclOperation.DESCRIBE),
              (ResourceType.TOPIC, "image_uploaded.dlq", AclOperation.WRITE), (ResourceType.GROUP, "noscored", AclOperation.READ)]
    acls = [AclBinding(rt, name, ResourcePatternType.LITERAL, "User:noscored", "*", op, AclPermissionType.ALLOW)
            for rt, name, op in grants]
    for fut in admin.create_acls(acls).values():
        fut.result(timeout=30)
    publish(secure_stack, [f"{origin.url}/img/s0-sharp.jpg"], 1)
    w = launch(worker(secure_env, tmp_path / "worker.log", IMAGEGATE_GROUP_ID="noscored",
                      **{"IMAGEGATE_KAFKA__sasl.username": "noscored", "IMAGEGATE_KAFKA__sasl.password": "noscored-pw"}))
    try:
        rc = w.proc.wait(120)
    finally:
        if w.alive():
            w.kill()
    log = w.log_path.read_text(errors="replace")
    assert rc != 0, log[-3000:]
    assert "fatal produce error" in log and "TOPIC_AUTHORIZATION_FAILED" in log, log[-3000:]
    assert committed(secure_stack.kafka_conf("admin"), "noscored") == {}  # no output, so no input offset committed


def test_listing_principal_reads_scored_only_and_writes_nothing(secure_stack):
    from confluent_kafka import Consumer, KafkaError, Producer

    conf = secure_stack.kafka_conf("listing")
    # JSON with a source_event_id, as image_scored readers (the other tests' collectors) expect
    marker = json.dumps({"source_event_id": f"listing-check-{time.monotonic_ns()}"}).encode()
    op = Producer(secure_stack.kafka_conf("operator"))
    op.produce("image_scored", marker)
    assert op.flush(60) == 0

    def first(topic: str, group: str, timeout: float = 60):
        """The first message or error the listing principal gets from `topic` in `group`."""
        c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and (m.error() or m.value() == marker):
                    return m
        finally:
            c.close()
        return None

    allowed = first("image_scored", "listing")
    assert allowed is not None and allowed.error() is None and allowed.value() == marker  # the control: its own read works
    denied = first("image_uploaded", "listing")
    assert denied is not None and denied.error().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    other_group = first("image_scored", "imagegate")
    assert other_group is not None and other_group.error().code() == KafkaError.GROUP_AUTHORIZATION_FAILED

    reports = []
    p = Producer({**conf, "message.timeout.ms": 30000})
    for topic in ("image_scored", "image_uploaded", "image_uploaded.dlq"):
        p.produce(topic, b"listing may not write", on_delivery=lambda err, msg: reports.append((msg.topic(), err)))
    p.flush(60)
    assert sorted(t for t, _ in reports) == ["image_scored", "image_uploaded", "image_uploaded.dlq"]
    assert all(err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED for _, err in reports), reports


def _coordinator(conf: dict[str, str]) -> int:
    """Every group's coordinator: the leader of __consumer_offsets' only partition (the stack has one)."""
    from confluent_kafka.admin import AdminClient

    md = AdminClient(conf).list_topics("__consumer_offsets", timeout=30)
    return md.topics["__consumer_offsets"].partitions[0].leader


def test_one_broker_killed_mid_stream_loses_nothing(secure_stack, secure_env, origin, tmp_path):
    """kill -9 the worker group's coordinator broker while 300 events stream, then restart it."""
    w = worker(secure_env, tmp_path / "worker.log").start()
    out = Collector(operator_settings(secure_stack))
    unready = [0.0]
    watching = threading.Event()
    try:
        victim = f"kafka-{_coordinator(secure_stack.kafka_conf('admin'))}"

        def watch():
            last = time.monotonic()
            while watching.is_set():
                time.sleep(0.1)
                now = time.monotonic()
                if w.http("/readyz")[0] != 200:
                    unready[0] += now - last
                last = now

        ids: set[str] = set()
        pub = threading.Thread(target=lambda: ids.update(_trickle(secure_stack, origin, 300, 20.0)), daemon=True)
        pub.start()
        deadline = time.monotonic() + 60
        while len(out.scored) < 60 and time.monotonic() < deadline:
            out.poll(0.5)
        watching.set()
        threading.Thread(target=watch, daemon=True).start()
        t_kill = time.monotonic()
        secure_stack.secure("kill", victim)
        assert pub.is_alive(), "the stream ended before the kill: not mid-stream"
        time.sleep(3)
        secure_stack.secure("start", victim, timeout=180)
        restarted = time.monotonic() - t_kill
        pub.join(120)
        assert len(ids) == 300
        missing = out.wait_for(ids, 180, alive=w.alive)
        watching.clear()
        ours = [b for b in out.scored if b["source_event_id"] in ids]
        dlq = [v for v, _ in out.dlq if json.loads(v).get("event_id") in ids]
        dups = len(ours) - len({b["source_event_id"] for b in ours})
        print(f"\nkill -9 {victim} (group coordinator) mid-stream of 300: lost {len(missing)}, DLQ {len(dlq)}, "
              f"duplicates {dups}, worker unready {unready[0]:.1f}s, broker back after {restarted:.1f}s")
        assert missing == set(), w.log_tail()
        assert dlq == []
        assert w.alive()
        assert w.stop() == 0
    finally:
        watching.clear()
        out.close()
        if w.alive():
            w.kill()


def _trickle(stack, origin, n: int, per_s: float) -> set[str]:
    """n distinct images published at about per_s a second (idempotent, acks=all), so the kill lands
    mid-stream; returns the ids the brokers acknowledged (the producer rides out the kill itself)."""
    from producer_tools.kafka_clients import producer

    settings = operator_settings(stack)
    p = producer(settings)
    acked: set[str] = set()
    errors: list[str] = []

    def report(err, msg):
        (errors.append(str(err)) if err else acked.add(json.loads(msg.value())["event_id"]))

    for i in range(n):
        ev = make_event(f"{origin.url}/distinct/{i}.jpg")
        p.produce(settings.topic_in, json.dumps(ev.model_dump(mode="json", exclude_none=True)).encode(),
                  ev.image_id.encode(), on_delivery=report)
        p.poll(0)
        time.sleep(1 / per_s)
    assert p.flush(180) == 0 and errors == [], errors[:3]
    return acked


@pytest.mark.parametrize("bad", ["password", "ca", "host"])
def test_redis_wrong_password_unknown_ca_or_hostname_mismatch_is_never_used(secure_stack, secure_env, origin, tmp_path, bad):
    """Redis is a cache: the worker keeps scoring without it (by design), but it never reads or
    writes Redis without the right password and a server certificate from the stack's CA."""
    url = secure_env["IMAGEGATE_REDIS_URL"]
    if bad == "password":
        url = url.replace(f":{secure_stack.env_of('worker')['IMAGEGATE_KAFKA__sasl.password']}@", ":not-the-password@")
        expect = "invalid username-password pair"
    elif bad == "ca":
        url = url.split("?")[0] + f"?ssl_ca_certs={make_ca(tmp_path, 'someone-else-ca')}"
        expect = "certificate verify failed"
    else:  # `localhost` reaches Redis, but its certificate names only IP 127.0.0.1
        url = url.replace("@127.0.0.1:", "@localhost:")
        expect = "Hostname mismatch"
    assert url != secure_env["IMAGEGATE_REDIS_URL"]
    w = worker(secure_env, tmp_path / "worker.log", IMAGEGATE_REDIS_URL=url).start()
    out = Collector(operator_settings(secure_stack))
    try:
        image_id = f"redis-{bad}-{time.monotonic_ns()}"
        from producer_tools.kafka_clients import producer
        from producer_tools.publish import publish as send

        settings = operator_settings(secure_stack)
        ev = make_event(f"{origin.url}/distinct/{time.monotonic_ns() % 100000}.jpg", image_id=image_id)
        send(producer(settings), settings.topic_in, [ev])
        assert out.wait_for({ev.event_id}, 120, alive=w.alive) == set(), w.log_tail()
        assert w.metric("imagegate_redis_up") == 0
        log = w.log_path.read_text(errors="replace")
        assert "redis unavailable" in log and expect.lower() in log.lower(), w.log_tail()
        assert w.stop() == 0
    finally:
        out.close()
        if w.alive():
            w.kill()
    admin = redis.Redis.from_url(secure_stack.env_of("admin")["IMAGEGATE_REDIS_URL"])
    assert admin.get(f"imagegate:image:{image_id}") is None  # nothing was written with the bad settings
