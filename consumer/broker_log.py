"""Quiet when the broker is down: one line when reachability changes, a summary while it stays down.

With the broker down, librdkafka reports every failed connection attempt twice (a `FAIL`
log line and an error callback), for the consumer and again for the producer: about 42
lines a second, which buries everything else and costs log storage for no information.
Here every such report goes through one `BrokerLog`:

- up -> down (or unknown -> down at start): one warning with the first error;
- while down: reports are counted, not logged; every `summary_every_s` one warning says for
  how long and how many were suppressed (also at shutdown, so the last words say it);
- down -> up (stats show a broker UP, or a message arrives): one info line.

Errors that are not about reaching the broker (authentication, a fatal error, ...) are
logged as before, each time. Thread-safe: the consumer's reports arrive on the poll loop,
the producer's on the sink thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from confluent_kafka import KafkaError

CONNECTIVITY = (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT)  # error codes meaning "cannot reach the broker"
_KAFKA_LOG = logging.getLogger("imagegate.kafka")
SUMMARY_EVERY_S = 60.0


class BrokerLog:
    def __init__(self, log: logging.Logger, summary_every_s: float = SUMMARY_EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        self.log = log
        self.summary_every_s = summary_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self.down = False
        self._down_since = 0.0
        self._last_line = 0.0
        self._suppressed = 0  # reports not logged since the last line

    def failed(self, error: str) -> None:
        """A report that the broker could not be reached."""
        with self._lock:
            now = self._clock()
            if not self.down:
                self.down, self._down_since, self._last_line, self._suppressed = True, now, now, 0
                self.log.warning("kafka broker unreachable; further connection errors are summarised",
                                 extra={"error": error, "summary_every_s": self.summary_every_s})
                return
            self._suppressed += 1
            self._summary_if_due(now)

    def ok(self) -> None:
        """Evidence that the broker is reachable (a broker UP in the statistics, a message)."""
        with self._lock:
            if not self.down:
                return
            now = self._clock()
            self.log.info("kafka broker reachable again", extra={"down_for_s": round(now - self._down_since, 1),
                                                                 "errors_suppressed": self._suppressed})
            self.down, self._suppressed = False, 0

    def client_error(self, err: KafkaError) -> None:
        """An `error_cb` for a client with nothing else to do on errors (the producer: its
        delivery reports decide what is fatal): connection failures here, the rest logged."""
        if err.code() in CONNECTIVITY:
            self.failed(str(err))
        else:
            _KAFKA_LOG.warning("kafka client error", extra={"error": str(err)})

    def tick(self) -> None:
        """Called from the poll loop, so a summary comes on time even if reports stop arriving."""
        with self._lock:
            if self.down:
                self._summary_if_due(self._clock())

    def close(self) -> None:
        """At shutdown: a last summary if the broker is still down."""
        with self._lock:
            if self.down:
                self._summary(self._clock())

    def _summary_if_due(self, now: float) -> None:
        if now - self._last_line >= self.summary_every_s:
            self._summary(now)

    def _summary(self, now: float) -> None:
        self.log.warning(f"kafka broker still unreachable for {now - self._down_since:.0f}s, "
                         f"{self._suppressed} errors suppressed",
                         extra={"down_for_s": round(now - self._down_since, 1), "errors_suppressed": self._suppressed})
        self._last_line, self._suppressed = now, 0


class ClientLog:
    """librdkafka's `logger` for one client: connection failures (facility FAIL) are counted by
    the `BrokerLog` while it is down; everything else goes to `imagegate.kafka` as before."""

    def __init__(self, broker: BrokerLog, logger: logging.Logger = _KAFKA_LOG):
        self.broker = broker
        self.logger = logger

    def log(self, level: int, msg: str, *args) -> None:  # called by confluent_kafka as logger.log(level, fmt, fac, name, text)
        if self.broker.down and args and args[0] == "FAIL":
            self.broker.failed(str(args[-1]))
            return
        self.logger.log(level, msg, *args)
