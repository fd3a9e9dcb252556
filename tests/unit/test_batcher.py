import queue
import threading

from consumer.batcher import Batcher


def test_flushes_at_max_batch_size():
    b = Batcher(max_batch_size=4, max_batch_delay_ms=10_000, capacity=100)
    stop = threading.Event()
    for i in range(10):
        b.put(i, stop)
    assert b.next_batch(stop) == [0, 1, 2, 3]
    assert b.next_batch(stop) == [4, 5, 6, 7]


def test_flushes_partial_batch_after_delay():
    b = Batcher(max_batch_size=64, max_batch_delay_ms=5, capacity=100)
    stop = threading.Event()
    b.put("a", stop)
    b.put("b", stop)
    assert b.next_batch(stop) == ["a", "b"]  # returns without 64 items: the delay bounded the wait


def test_empty_queue_returns_empty_batch():
    b = Batcher(max_batch_size=8, max_batch_delay_ms=5, capacity=4)
    assert b.next_batch(threading.Event(), idle_timeout_s=0.01) == []


def test_put_blocks_when_full_until_stop():
    b = Batcher(max_batch_size=8, max_batch_delay_ms=5, capacity=1)
    stop = threading.Event()
    assert b.put(1, stop)
    result = []
    th = threading.Thread(target=lambda: result.append(b.put(2, stop)))
    th.start()
    th.join(0.3)
    assert th.is_alive()  # blocked: this is the backpressure
    stop.set()
    th.join(2)
    assert result == [False]


class _CountingQueue(queue.Queue):
    """Records every wait the batcher makes for an item (a get that may block)."""

    def __init__(self, maxsize: int):
        super().__init__(maxsize)
        self.waits: list[float | None] = []

    def get(self, block: bool = True, timeout: float | None = None):
        if block:
            self.waits.append(timeout)
        return super().get(block, timeout)


def test_without_a_delay_what_is_waiting_leaves_without_waiting_for_more():
    """Delay 0 (the worker's default): the model is idle when it asks, so the batcher never holds
    an image back for company. It waits only for the first item, never after it."""
    b = Batcher(max_batch_size=8, max_batch_delay_ms=0, capacity=100)
    b._q = _CountingQueue(100)
    stop = threading.Event()
    b.put("a", stop)
    assert b.next_batch(stop) == ["a"]
    for x in "bcd":
        b.put(x, stop)
    assert b.next_batch(stop) == ["b", "c", "d"]  # all that was waiting, in one batch
    assert b._q.waits == [0.1, 0.1]  # one wait per batch, for its first item only


def test_with_a_delay_the_batcher_waits_for_more_after_the_first():
    """The counter-check of the test above: Triton's behaviour (delay > 0) does wait after the first."""
    b = Batcher(max_batch_size=8, max_batch_delay_ms=5, capacity=100)
    b._q = _CountingQueue(100)
    stop = threading.Event()
    b.put("a", stop)
    assert b.next_batch(stop) == ["a"]
    assert len(b._q.waits) == 2 and b._q.waits[1] is not None and b._q.waits[1] > 0


def test_limit_caps_a_batch_below_max_batch_size():
    b = Batcher(max_batch_size=32, max_batch_delay_ms=0, capacity=100)
    stop = threading.Event()
    for i in range(10):
        b.put(i, stop)
    assert [b.next_batch(stop, limit=4) for _ in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_the_worker_dispatches_without_a_delay_by_default():
    from consumer.config import Settings

    assert Settings().max_batch_delay_ms == 0
