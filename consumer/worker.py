"""The worker: wires the Kafka loop, the chain of steps and the sink together, and stops them in order.

    KafkaLoop (consumer/loop.py) --submit--> chain of steps (consumer/pipeline.py)
        --Emitter (per-image order, consumer/ordering.py)--> Sink (Redis + produce, consumer/sink.py)
        --delivery report--> Completion (consumer/done.py) --> OffsetTracker --> store / commit

This class only owns lifetimes: what each part does lives in its own module.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from consumer import metrics
from consumer.broker_log import BrokerLog, ClientLog
from consumer.cache import ResultCache
from consumer.config import Settings
from consumer.done import Completion
from consumer.health import Health
from consumer.loop import KafkaLoop
from consumer.offsets import OffsetTracker
from consumer.ordering import Emitter
from consumer.pipeline import build_pipeline
from consumer.policy import Policy
from consumer.sink import Sink

log = logging.getLogger("imagegate.worker")


class Worker:
    def __init__(self, settings: Settings, predictor: Any, policy: Policy, health: Health | None = None,
                 candidate: Any = None):
        s = self.settings = settings
        self.health = health or Health(s.stall_after_s, s.in_flight_max_age_s)
        self.health.in_flight_max_age_s = s.in_flight_max_age_s
        self.health.model_loaded = True
        check = getattr(policy, "check_model", None)
        if check is not None:
            check(tuple(predictor.heads))  # a profile naming a head this model lacks fails at start
        metrics.MODEL_INFO.info({"model_name": predictor.name, "model_version": predictor.version,
                                 "policy_version": policy.version, "device": str(predictor.device)})
        metrics.watch_gpu(predictor.device)
        metrics.MAX_IN_FLIGHT.set(s.max_in_flight)
        self.stop_event = threading.Event()  # stop taking new work
        self._halt = threading.Event()  # stop the pipeline threads
        self.tracker = OffsetTracker()
        self.health.oldest_in_flight = self.tracker.oldest_age_s
        self.cache = ResultCache(s.redis_url, s.cache_ttl_s, s.redis_timeout_s, s.redis_retry_after_s,
                                 predictor.version, policy.version)
        # Consumer and producer report connection failures to one BrokerLog: one line per change, not per attempt.
        self.broker_log = BrokerLog(logging.getLogger("imagegate.loop"))
        producer_conf = {**s.kafka_common(), "logger": ClientLog(self.broker_log), "error_cb": self.broker_log.client_error}
        self.sink = Sink(producer_conf, s.topic_out, s.topic_dlq, s.source, self.cache, Completion(self.tracker),
                         on_fatal=self._fatal, heartbeat=lambda: self.health.beat("sink"))
        self.emitter = Emitter(self.sink.send, lambda src: self.tracker.is_current(src.topic, src.partition, src.epoch))
        self.pipeline = build_pipeline(s, predictor, policy, self.cache, self.emitter, self.tracker, self.health,
                                       self._halt, candidate)
        self.loop = KafkaLoop(s, self.tracker, self.emitter, self.pipeline.submit, self.health, self.stop_event,
                              awaiting_ack=self.sink.pending, broker_log=self.broker_log)
        self.health.register("sink", self.sink.thread)

    def run(self) -> int:
        """Blocks until stop() (SIGTERM/SIGINT) or a fatal error; 0 on a clean stop, 1 after a fatal one."""
        self.sink.start()
        self.pipeline.start()
        log.info("worker started", extra={"model": {"name": self.pipeline.infer.model_ref.name,
                                                    "version": self.pipeline.infer.model_ref.version},
                                          "policy_version": self.cache.policy_version})
        try:
            self.loop.run()
        finally:
            self._shutdown()
        return 1 if self.health.fatal else 0

    def stop(self) -> None:
        self.stop_event.set()

    def _fatal(self, why: str) -> None:
        self.health.set_fatal(why)
        self.stop_event.set()

    def _shutdown(self) -> None:
        """Within `shutdown_timeout_s`: drain and commit, then flush what is left to deliver."""
        s = self.settings
        guard = hard_stop(s.shutdown_timeout_s + 10)
        deadline = time.monotonic() + s.shutdown_timeout_s
        reserve = min(5.0, 0.2 * s.shutdown_timeout_s)  # kept for the producer's final flush
        log.info("shutting down: draining in-flight work", extra={"in_flight": self.tracker.in_flight()})
        left = self.loop.drain_and_close(deadline - reserve)
        self._halt.set()
        self.pipeline.stop()
        self.sink.stop(max(0.5, deadline - time.monotonic()))
        self.cache.close()
        guard.cancel()
        log.info("worker stopped", extra={"uncommitted_in_flight": left, "fatal": self.health.fatal})


def hard_stop(after_s: float) -> threading.Timer:
    """The bound on the bound: whatever hangs (a broker call that never returns), the process
    exits before the orchestrator's grace period ends, rather than being SIGKILLed mid-commit."""
    def _exit() -> None:
        log.critical("shutdown did not finish in time; exiting", extra={"after_s": after_s})
        logging.shutdown()
        os._exit(3)

    t = threading.Timer(after_s, _exit)
    t.daemon = True
    t.start()
    return t
