"""Backpressure (consumer/flow.py): results waiting for the broker's ack are bounded apart from
work still in the chain, so a stream of cache hits, handed to the producer at once, does not
pause the partitions every few hundred events (the bench's cache-hit path, README "Capacity")."""

from __future__ import annotations

from consumer.config import load_settings
from consumer.flow import FlowControl
from consumer.offsets import OffsetTracker

TP0 = ("uploads", 0)


class Recorder:
    """Stands in for the consumer's pause/resume only: what FlowControl asked for, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, int]]]] = []

    def pause(self, tps) -> None:
        self.calls.append(("pause", [(tp.topic, tp.partition) for tp in tps]))

    def resume(self, tps) -> None:
        self.calls.append(("resume", [(tp.topic, tp.partition) for tp in tps]))


def flow_with(n_started: int, acking: dict, **limits) -> tuple[FlowControl, OffsetTracker, Recorder]:
    s = load_settings().model_copy(update={"topic_in": "uploads", "topic_backfill": None, **limits})
    tracker = OffsetTracker()
    epoch = tracker.assign(*TP0)
    for off in range(n_started):
        tracker.start(*TP0, off, epoch)
    return FlowControl(s, tracker, lambda: acking["n"]), tracker, Recorder()


def test_results_awaiting_ack_do_not_count_toward_the_in_flight_bound():
    acking = {"n": 600}  # 600 hits judged and handed to the producer, acks not back yet
    flow, _, consumer = flow_with(600, acking, max_in_flight=512, max_awaiting_ack=4096)
    flow.apply(consumer, {TP0})
    assert consumer.calls == [] and flow.paused == set()


def test_work_in_the_chain_at_the_bound_pauses_and_resumes_at_half():
    acking = {"n": 0}
    flow, tracker, consumer = flow_with(512, acking, max_in_flight=512, max_awaiting_ack=4096)
    flow.apply(consumer, {TP0})
    assert consumer.calls == [("pause", [TP0])]
    epoch = tracker.epoch(*TP0)
    for off in range(200):  # 312 left: above half, still paused
        tracker.complete(*TP0, off, epoch)
    flow.apply(consumer, {TP0})
    assert consumer.calls == [("pause", [TP0])]
    for off in range(200, 256):  # 256 left: half
        tracker.complete(*TP0, off, epoch)
    flow.apply(consumer, {TP0})
    assert consumer.calls == [("pause", [TP0]), ("resume", [TP0])]


def test_a_broker_that_does_not_ack_still_stops_consumption():
    """Results pile up at the producer while the broker is away: the second bound pauses."""
    acking = {"n": 100}
    flow, _, consumer = flow_with(100, acking, max_in_flight=512, max_awaiting_ack=100)
    flow.apply(consumer, {TP0})
    assert consumer.calls == [("pause", [TP0])]
    acking["n"] = 60  # in-flight counts 100 still, but only 40 are in the chain: above half of 100 acking
    flow.apply(consumer, {TP0})
    assert consumer.calls == [("pause", [TP0])]
    acking["n"] = 50
    flow.apply(consumer, {TP0})
    assert consumer.calls[-1] == ("resume", [TP0])


def test_a_count_read_apart_from_the_tracker_never_makes_work_negative():
    acking = {"n": 900}  # the sink counted acks the tracker has already seen: clamp, don't go below 0
    flow, _, consumer = flow_with(10, acking, max_in_flight=4, max_awaiting_ack=4096)
    flow.apply(consumer, {TP0})
    assert consumer.calls == []
