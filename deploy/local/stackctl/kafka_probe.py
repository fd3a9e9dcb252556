"""Is the broker ready? A Metadata answer listing at least one broker: through confluent_kafka
when it is importable (the project venv), else over a raw socket (bare python3)."""

from __future__ import annotations

import socket
import struct

from .paths import HOST, address, ports


def _raw_metadata_brokers(port: int, timeout: float) -> int:
    """Send a Metadata v4 request (all topics) over a raw socket and return the number of
    brokers in the answer. Used when confluent_kafka is not importable (no venv).
    v4 is the oldest Metadata version Kafka 4.x still accepts (KIP-896)."""
    client = b"imagegate-stack"
    header = struct.pack(">hhih", 3, 4, 7, len(client)) + client  # api_key, version, corr id, client id
    body = struct.pack(">ib", -1, 0)  # topics=null (all), allow_auto_topic_creation=false
    req = header + body
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(req)) + req)
        buf = b""
        while len(buf) < 16:
            chunk = s.recv(4096)
            if not chunk:
                raise OSError("connection closed")
            buf += chunk
    _size, corr, _throttle, nbrokers = struct.unpack(">iiii", buf[:16])
    if corr != 7:
        raise OSError(f"unexpected correlation id {corr}")
    return nbrokers


class _NullLogger:
    def log(self, *a, **k):
        pass

    def __getattr__(self, _):
        return lambda *a, **k: None


def kafka_metadata_ok(timeout: float) -> tuple[bool, str]:
    try:
        from confluent_kafka.admin import AdminClient  # type: ignore
    except Exception:
        try:
            return _raw_metadata_brokers(ports()["kafka"], timeout) > 0, "metadata (raw socket)"
        except (OSError, ValueError) as e:
            return False, f"metadata (raw socket: {e})"
    try:
        admin = AdminClient({"bootstrap.servers": address("kafka"), "log_level": 0,
                             "logger": _NullLogger()})
        md = admin.list_topics(timeout=timeout)
        return (len(md.brokers) > 0), "metadata"
    except Exception as e:  # KafkaException on timeout
        return False, f"metadata ({e})"
