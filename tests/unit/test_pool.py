import threading

from consumer.health import Health
from consumer.pool import WorkerPool
from consumer.work import Source, WorkItem


def item(offset: int) -> WorkItem:
    return WorkItem(Source("t", 0, offset, 1, None, None))


def test_a_bounded_pool_holds_the_submitter_back_until_there_is_room_or_stop():
    """The decode pool: items waiting for it hold their fetched bytes, so a full queue must stall the
    fetch thread that submits (backpressure), not grow."""
    halt = threading.Event()
    release = threading.Event()
    ran: list[tuple[int, int]] = []

    def run(it: WorkItem, start: int) -> None:
        ran.append((it.source.offset, start))
        release.wait(10)

    pool = WorkerPool("decode", 1, run, Health(60.0), halt, capacity=1)
    pool.start()
    assert pool.submit(item(0), 7)  # taken by the one thread, which then blocks in run
    while not ran:
        threading.Event().wait(0.01)
    assert pool.submit(item(1), 7)  # fills the queue
    result: list[bool] = []
    th = threading.Thread(target=lambda: result.append(pool.submit(item(2), 7)))
    th.start()
    th.join(0.3)
    assert th.is_alive()  # blocked: this is the backpressure
    halt.set()
    th.join(2)
    release.set()
    assert result == [False] and ran == [(0, 7)]


def test_an_unbounded_pool_never_holds_the_submitter_back():
    halt = threading.Event()
    pool = WorkerPool("fetch", 1, lambda it, start: None, Health(60.0), halt)  # not started: nothing is taken
    assert all(pool.submit(item(i)) for i in range(1000))
    assert pool.qsize() == 1000
