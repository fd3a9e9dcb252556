import random
import threading

from consumer.offsets import OffsetTracker


def tracker(*partitions: int) -> tuple[OffsetTracker, dict[int, int]]:
    t = OffsetTracker()
    return t, {p: t.assign("in", p) for p in partitions}


def test_commit_point_is_highest_contiguous_completed():
    t, e = tracker(0)
    for o in range(10, 15):
        assert t.start("in", 0, o, e[0])
    t.complete("in", 0, 12, e[0])
    t.complete("in", 0, 13, e[0])
    assert t.to_store() == []  # 10 still in flight: nothing may be committed
    t.complete("in", 0, 10, e[0])
    assert t.to_store() == [("in", 0, 11)]
    t.complete("in", 0, 11, e[0])
    assert t.to_store() == [("in", 0, 14)]
    assert t.in_flight() == 1
    t.complete("in", 0, 14, e[0])
    assert t.to_store() == [("in", 0, 15)]
    assert t.to_store() == []  # unchanged points are not re-stored


def test_partitions_are_independent_and_forget_ignores_late_completions():
    t, e = tracker(0, 1)
    t.start("in", 0, 0, e[0])
    t.start("in", 1, 0, e[1])
    t.complete("in", 1, 0, e[1])
    assert t.to_store() == [("in", 1, 1)]
    t.forget("in", 0)
    assert t.complete("in", 0, 0, e[0]) is False
    assert t.in_flight() == 0


def test_completion_from_an_earlier_assignment_never_counts_in_a_later_one():
    """Revoke + re-assign of the same partition: work consumed under the old epoch finishes late."""
    t, e = tracker(0)
    old = e[0]
    t.start("in", 0, 7, old)
    t.forget("in", 0)  # revoked while offset 7 was in flight
    new = t.assign("in", 0)  # ...and assigned back: the broker re-delivers from the committed offset
    assert new != old
    assert t.start("in", 0, 7, old) is False  # stale work cannot even start
    t.start("in", 0, 7, new)
    t.start("in", 0, 8, new)
    assert t.complete("in", 0, 7, old) is False  # the late completion of the old epoch is ignored
    assert t.to_store() == []  # offset 7 is not done in the new assignment
    t.complete("in", 0, 7, new)
    assert t.to_store() == [("in", 0, 8)]


def test_parked_events_are_out_of_the_in_flight_bound_and_age_but_still_hold_the_commit():
    t, e = tracker(0)
    t.start("in", 0, 0, e[0])
    t.start("in", 0, 1, e[0])
    t.set_waiting("in", 0, 0, e[0], True)
    assert t.in_flight() == 1 and t.waiting() == 1
    t.complete("in", 0, 1, e[0])
    assert t.to_store() == []  # the parked event 0 still holds the commit point
    assert t.oldest_age_s() == 0.0  # nothing in flight that is not parked
    t.complete("in", 0, 0, e[0])
    assert t.to_store() == [("in", 0, 2)] and t.waiting() == 0


def test_random_completion_order_from_many_threads():
    t, e = tracker(3)
    offsets = list(range(2000))
    for o in offsets:
        t.start("in", 3, o, e[3])
    random.Random(1).shuffle(offsets)
    chunks = [offsets[i::4] for i in range(4)]
    threads = [threading.Thread(target=lambda c=c: [t.complete("in", 3, o, e[3]) for o in c]) for c in chunks]
    [th.start() for th in threads]
    [th.join() for th in threads]
    assert t.to_store() == [("in", 3, 2000)]
    assert t.in_flight() == 0


def test_redelivered_offsets_are_not_tracked_twice():
    t, e = tracker(0)
    assert t.start("in", 0, 5, e[0])
    assert not t.start("in", 0, 5, e[0])
    t.complete("in", 0, 5, e[0])
    assert t.in_flight() == 0
    assert not t.start("in", 0, 5, e[0])  # already done: below the commit point


def test_epoch_and_is_current_follow_assignments():
    t, e = tracker(0)
    assert t.epoch("in", 0) == e[0] and t.epoch("in", 1) is None
    assert t.is_current("in", 0, e[0]) and not t.is_current("in", 0, e[0] + 1) and not t.is_current("in", 1, e[0])
    t.forget("in", 0)
    assert t.epoch("in", 0) is None and not t.is_current("in", 0, e[0])


def test_in_flight_for_counts_only_the_named_partitions_and_parked_on_request():
    t, e = tracker(0, 1)
    for o in range(3):
        t.start("in", 0, o, e[0])
    t.start("in", 1, 0, e[1])
    t.set_waiting("in", 0, 2, e[0], True)
    assert t.in_flight_for([("in", 0)]) == 2  # parked event 2 excluded
    assert t.in_flight_for([("in", 0)], include_waiting=True) == 3
    assert t.in_flight_for([("in", 1), ("in", 9)]) == 1
    assert t.in_flight({"in"}) == 3 and t.in_flight({"other"}) == 0
    t.complete("in", 1, 0, e[1])
    assert t.to_store([("in", 0)]) == []  # partition 1 advanced, but only partition 0 was asked for
    assert t.to_store([("in", 1)]) == [("in", 1, 1)]


def test_oldest_age_counts_the_oldest_unfinished_unparked_event():
    import time

    t, e = tracker(0)
    t.start("in", 0, 0, e[0])
    time.sleep(0.3)
    t.start("in", 0, 1, e[0])
    with_0 = t.oldest_age_s()
    assert with_0 >= 0.3  # offset 0, started 0.3 s before offset 1
    t.complete("in", 0, 0, e[0])
    assert t.oldest_age_s() < with_0  # now offset 1 is the oldest
