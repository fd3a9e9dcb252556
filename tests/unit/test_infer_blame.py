"""Whose failure is an image that fails alone? At low load most forwards hold one image (no batch
delay), so there is no batch to compare with; the device must not be taken for a poison image.
(tests/reliability/test_device_errors.py dead-lettered an image this way before the canary.)"""

from __future__ import annotations

import threading

import numpy as np

from consumer.batcher import Batcher
from consumer.health import Health
from consumer.retry import Transient
from consumer.steps.infer import Infer
from consumer.work import Source, WorkItem


class Device:
    """Scores anything while healthy; `broken` fails every forward, `poison` fails forwards holding it."""

    name, version, chunk = "fake", "0", 4

    def __init__(self):
        self.broken = False
        self.poison = -1.0

    def predict(self, x):
        if self.broken or (x == self.poison).all(axis=(1, 2, 3)).any():
            raise RuntimeError("forward failed")
        return {"quality": np.full(len(x), 50.0, dtype=np.float32)}


def item(n: int, value: float) -> WorkItem:
    it = WorkItem(Source("t", 0, n, 0, None, None))
    it.pixels = np.full((3, 4, 4), value, dtype=np.uint8)
    it.measured = {}
    return it


def infer(dev: Device):
    done, failed = [], []
    step = Infer(dev, Batcher(4, 0.0, 16), Health(30), threading.Event(), done.append,
                 lambda it, e: failed.append((it, e)))
    return step, done, failed


def test_a_lone_failure_before_any_image_scored_is_ours():
    dev = Device()
    dev.broken = True
    step, done, failed = infer(dev)
    step._score([item(1, 7)])
    assert done == [] and len(failed) == 1
    assert isinstance(failed[0][1], Transient), "a broken device was taken for a poison image"
    assert step.health.device_failures == 1


def test_a_lone_failure_while_the_last_good_image_fails_too_is_ours():
    dev = Device()
    step, done, failed = infer(dev)
    step._score([item(1, 7)])
    assert len(done) == 1
    dev.broken = True
    step._score([item(2, 8)])
    assert isinstance(failed[0][1], Transient) and step.health.device_failures == 1


def test_a_lone_failure_while_the_last_good_image_still_scores_is_the_image():
    dev = Device()
    step, done, failed = infer(dev)
    step._score([item(1, 7)])
    dev.poison = 9
    step._score([item(2, 9)])
    assert len(failed) == 1 and not isinstance(failed[0][1], Transient)
    assert step.health.device_failures == 0
