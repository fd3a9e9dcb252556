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
