"""`imagegate status`: one view of a consumer group, the way operators otherwise assemble it from
`kafka-consumer-groups.sh --describe`, the DLQ and each worker's /metrics.

Kafka says who is in the group, what each member owns, where the group committed and where
each partition ends (lag = end - committed; a partition with no commit counts everything
retained, as the worker starts from the earliest offset). Workers' metrics endpoints add what
only they know: model and policy versions, device, paused consumption, assigned partitions.
Each source is read independently, so one that fails is reported and the rest still shown.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from consumer.config import Settings
from producer_tools.dlq import DlqReader
from producer_tools.kafka_clients import common as kafka_common
from producer_tools.kafka_clients import with_coordinator_retry


@dataclass
class Member:
    member_id: str
    client_id: str
    host: str
    instance_id: str | None
    partitions: list[str]  # "topic:partition"


@dataclass
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    start: int
    end: int
    lag: int
    owner: str | None  # client_id of the member it is assigned to


@dataclass
class Worker:
    url: str
    error: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    policy_version: str | None = None
    device: str | None = None
    paused: bool | None = None
    assigned_partitions: int | None = None


@dataclass
class DlqStatus:
    topic: str
    size: int = 0
    scanned: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)


@dataclass
class GroupStatus:
    group: str
    state: str = "unknown"
    group_type: str = "unknown"
    members: list[Member] = field(default_factory=list)
    partitions: list[PartitionLag] = field(default_factory=list)
    dlq: DlqStatus | None = None
    workers: list[Worker] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "total_lag": self.total_lag}


def _describe_group(admin: AdminClient, st: GroupStatus, timeout_s: float) -> None:
    try:
        d = with_coordinator_retry(
            lambda: admin.describe_consumer_groups([st.group], request_timeout=timeout_s)[st.group].result(), timeout_s)
    except KafkaException as e:
        st.errors.append(f"describe group {st.group}: {e.args[0] if e.args else e}")
        return
    st.state = getattr(d.state, "name", str(d.state)).lower()
    st.group_type = getattr(getattr(d, "type", None), "name", "unknown").lower()
    for m in d.members:
        tps = m.assignment.topic_partitions if m.assignment else []
        st.members.append(Member(m.member_id, m.client_id, m.host, m.group_instance_id,
                                 sorted(f"{tp.topic}:{tp.partition}" for tp in tps)))


def _committed(admin: AdminClient, group: str, st: GroupStatus, timeout_s: float) -> dict[tuple[str, int], int]:
    from confluent_kafka import ConsumerGroupTopicPartitions

    try:
        res = with_coordinator_retry(lambda: admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=timeout_s)[group].result(), timeout_s)
    except KafkaException as e:
        st.errors.append(f"committed offsets of {group}: {e.args[0] if e.args else e}")
        return {}
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions or [] if tp.offset >= 0}


def _lags(s: Settings, topics: list[str], committed: dict[tuple[str, int], int], st: GroupStatus, timeout_s: float) -> None:
    owner = {tp: m.client_id for m in st.members for tp in m.partitions}
    c = Consumer({**kafka_common(s), "group.id": f"imagegate-status-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False})
    try:
        for topic in topics:
            md = c.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if md is None or md.error is not None:
                st.errors.append(f"topic {topic} does not exist")
                continue
            for p in sorted(md.partitions):
                low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                done = committed.get((topic, p))
                lag = max(0, high - max(low, done if done is not None else low))
                st.partitions.append(PartitionLag(topic, p, done, low, high, lag, owner.get(f"{topic}:{p}")))
    except KafkaException as e:
        st.errors.append(f"end offsets: {e.args[0] if e.args else e}")
    finally:
        c.close()


def _dlq(s: Settings, scan: int, st: GroupStatus, timeout_s: float) -> None:
    reader = DlqReader(s, s.topic_dlq, group=None, timeout_s=timeout_s)
    try:
        reader.open()
        d = DlqStatus(s.topic_dlq, size=reader.size if reader.exists else 0)
        if reader.exists and scan > 0:
            per = max(1, scan // max(1, len(reader.start)))
            for p in reader.start:  # the newest records of each partition
                reader.start[p] = max(reader.low[p], reader.end[p] - per)
            stages = Counter(r.stage for r in reader.records())
            d.scanned, d.by_stage = sum(stages.values()), dict(stages.most_common())
        st.dlq = d
    except KafkaException as e:
        st.errors.append(f"DLQ {s.topic_dlq}: {e.args[0] if e.args else e}")
    finally:
        reader.close()


def metrics_url(url: str) -> str:
    """Accept `host:port`, `http://host:port` or a full URL to /metrics."""
    if "://" not in url:
        url = "http://" + url
    _, _, rest = url.partition("://")
    return url if "/" in rest else f"{url}/metrics"


def read_worker(url: str, timeout_s: float = 5.0) -> Worker:
    w = Worker(metrics_url(url))
    try:
        with urllib.request.urlopen(w.url, timeout=timeout_s) as r:
            text = r.read().decode("utf-8", "replace")
    except (OSError, ValueError) as e:
        w.error = f"cannot read metrics: {e}"
        return w
    try:
        for fam in text_string_to_metric_families(text):
            for sample in fam.samples:
                if sample.name == "imagegate_model_info":
                    w.model_name = sample.labels.get("model_name")
                    w.model_version = sample.labels.get("model_version")
                    w.policy_version = sample.labels.get("policy_version")
                    w.device = sample.labels.get("device")
                elif sample.name == "imagegate_consumer_paused":
                    w.paused = sample.value > 0
                elif sample.name == "imagegate_assigned_partitions":
                    w.assigned_partitions = int(sample.value)
    except ValueError as e:
        w.error = f"not Prometheus text: {e}"
        return w
    if w.model_version is None:
        w.error = "no imagegate_model_info metric (not an imagegate worker, or an old one)"
    return w


def collect(s: Settings, group: str, metrics_urls: list[str], dlq_scan: int = 10_000, timeout_s: float = 15.0) -> GroupStatus:
    st = GroupStatus(group)
    admin = AdminClient(kafka_common(s))
    _describe_group(admin, st, timeout_s)
    committed = _committed(admin, group, st, timeout_s)
    topics = [s.topic_in] + ([s.topic_backfill] if s.topic_backfill else [])
    topics += sorted({t for t, _ in committed} - set(topics))  # anything else the group consumes
    _lags(s, topics, committed, st, timeout_s)
    if dlq_scan >= 0:
        _dlq(s, dlq_scan, st, timeout_s)
    st.workers = [read_worker(u) for u in metrics_urls]
    st.errors += [f"worker {w.url}: {w.error}" for w in st.workers if w.error]
    return st


def render(st: GroupStatus) -> str:
    """The human table; `--json` prints `as_json()` instead."""
    lines = [f"group {st.group}: {st.state}, {len(st.members)} member(s), protocol {st.group_type}, total lag {st.total_lag}"]
    if st.members:
        lines.append(_table(["member", "client", "host", "instance", "partitions"],
                            [[m.member_id[:24], m.client_id, m.host, m.instance_id or "-", ",".join(m.partitions) or "-"]
                             for m in st.members]))
    if st.partitions:
        lines.append(_table(["topic", "partition", "committed", "end", "lag", "owner"],
                            [[p.topic, p.partition, "-" if p.committed is None else p.committed, p.end, p.lag, p.owner or "-"]
                             for p in st.partitions]))
    if st.dlq is not None:
        stages = ", ".join(f"{k} {v}" for k, v in st.dlq.by_stage.items()) or "-"
        scanned = "" if st.dlq.scanned >= st.dlq.size else f" (newest {st.dlq.scanned} scanned)"
        lines.append(f"DLQ {st.dlq.topic}: {st.dlq.size} records; by stage{scanned}: {stages}")
    if st.workers:
        lines.append(_table(["worker", "model", "policy", "device", "paused", "assigned"],
                            [[w.url, f"{w.model_name} {w.model_version}" if w.model_version else "?", w.policy_version or "?",
                              w.device or "?", {True: "yes", False: "no", None: "?"}[w.paused],
                              "?" if w.assigned_partitions is None else w.assigned_partitions] for w in st.workers]))
        versions = {(w.model_version, w.policy_version) for w in st.workers if w.model_version}
        if len(versions) > 1:
            lines.append(f"workers run {len(versions)} different model/policy versions: a rollout is in progress or stuck")
    lines += [f"error: {e}" for e in st.errors]
    return "\n\n".join(lines)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)
