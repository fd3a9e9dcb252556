"""The product-photo evaluation set without the model: its expectations and the measured rules.

The model-dependent half (heads, score) is what `python -m training.product_eval` measures; here
every measured rule must give exactly the expected codes on every generated image, so a change
to consumer/signals.py that breaks one is caught in `make test`.
"""

from __future__ import annotations

import pytest

from consumer.config import DEFAULT_POLICY_FILE
from consumer.decode import DecodeError, DecodeLimits, open_rgb
from consumer.events import ReasonCode
from consumer.policy import HEADS, Policy
from consumer.signals import measure
from training import product_eval

MEASURED = {"low_resolution", "bad_aspect_ratio", "background_not_white", "product_too_small", "border", "product_cropped"}
NEUTRAL_HEADS = {"quality": 80.0, **{h: 0.0 for h in HEADS}}


@pytest.fixture(scope="module")
def cases():
    return product_eval.build()


def test_every_reason_code_is_expected_from_some_image(cases):
    expected = {c for case in cases for e in case.expect.values() for c in e.codes}
    assert expected == {c.value for c in ReasonCode}
    assert all(set(case.expect) == set(product_eval.PROFILES) for case in cases)
    assert 90 <= len(cases) <= 300  # a few hundred images at most: the model runs ~5 images/s on CPU


def test_measured_rules_give_exactly_the_expected_codes(cases):
    policy = Policy.from_file(DEFAULT_POLICY_FILE)
    wrong = []
    for case in cases:
        if case.data is None:
            continue
        try:
            rgb, _, size = open_rgb(case.data, DecodeLimits(), min_side=384)
        except DecodeError as e:
            assert {e.code.value} == set(case.expect["default"].codes), case.name
            continue
        signals = {**measure(rgb, size), **NEUTRAL_HEADS, "contrast": 0.2}
        for profile in product_eval.PROFILES:
            got = {r.code.value for r in policy.judge(signals, profile, "main").reasons}
            want = case.expect[profile].codes & MEASURED
            if got != want:
                wrong.append((case.name, profile, sorted(want), sorted(got)))
    assert wrong == []
