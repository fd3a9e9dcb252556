import random
import threading

from consumer.offsets import OffsetTracker


def test_commit_point_is_highest_contiguous_completed():
    t = OffsetTracker()
    for o in range(10, 15):
        t.start("in", 0, o)
    t.complete("in", 0, 12)
    t.complete("in", 0, 13)
    assert t.to_store() == []  # 10 still in flight: nothing may be committed
    t.complete("in", 0, 10)
    assert t.to_store() == [("in", 0, 11)]
    t.complete("in", 0, 11)
    assert t.to_store() == [("in", 0, 14)]
    assert t.in_flight() == 1
    t.complete("in", 0, 14)
    assert t.to_store() == [("in", 0, 15)]
    assert t.to_store() == []  # unchanged points are not re-stored


def test_partitions_are_independent_and_forget_ignores_late_completions():
    t = OffsetTracker()
    t.start("in", 0, 0)
    t.start("in", 1, 0)
    t.complete("in", 1, 0)
    assert t.to_store() == [("in", 1, 1)]
    t.forget("in", 0)
    assert t.complete("in", 0, 0) is False
    assert t.in_flight() == 0


def test_random_completion_order_from_many_threads():
    t = OffsetTracker()
    offsets = list(range(2000))
    for o in offsets:
        t.start("in", 3, o)
    random.Random(1).shuffle(offsets)
    chunks = [offsets[i::4] for i in range(4)]
    threads = [threading.Thread(target=lambda c=c: [t.complete("in", 3, o) for o in c]) for c in chunks]
    [th.start() for th in threads]
    [th.join() for th in threads]
    assert t.to_store() == [("in", 3, 2000)]
    assert t.in_flight() == 0


def test_redelivered_offsets_are_not_tracked_twice():
    t = OffsetTracker()
    t.start("in", 0, 5)
    t.start("in", 0, 5)
    t.complete("in", 0, 5)
    assert t.in_flight() == 0
