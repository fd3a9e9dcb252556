import json

import pytest

from consumer.config import DEFAULT_POLICY_FILE
from consumer.events import Decision, ReasonCode
from consumer.policy import CROPPED_CODE, HEADS, RULES, Policy, PolicyFile, load_spec
from model.architecture import HEADS as MODEL_HEADS

P = Policy.from_file(DEFAULT_POLICY_FILE)
GOOD = {"quality": 80.0, "width": 1600, "height": 1200, "blur": 0.05, "noise": 0.05, "compression": 0.05,
        "underexposure": 0.05, "overexposure": 0.05, "overlay": 0.05, "contrast": 0.2}
# A compliant main image: product on pure white, filling 90 % of the frame, no border.
MAIN = {**GOOD, "width": 1200, "height": 1200, "background_white": 1.0, "product_fill": 0.9, "border": 0.0,
        "product_cropped": 0.0}


def codes(v):
    return {r.code for r in v.reasons}


def test_good_image_is_accepted():
    v = P.judge(GOOD, "default", "main")
    assert v.decision is Decision.ACCEPT and v.reasons == [] and v.score == 80.0
    assert v.policy.name == "default" and v.policy.version == P.version


def test_compliant_main_image_is_accepted_under_main_image():
    v = P.judge(MAIN, "main_image", "main")
    assert v.decision is Decision.ACCEPT and v.reasons == []


def test_blurry_image_is_demoted_with_reason_and_values():
    v = P.judge({**GOOD, "blur": 0.7}, "default", "main")
    assert v.decision is Decision.DEMOTE
    (r,) = v.reasons
    assert r.code is ReasonCode.BLURRY and r.value == 0.7 and r.threshold == 0.5
    assert "70 %" in r.message and "50 %" in r.message


def test_very_blurry_image_is_rejected():
    assert P.judge({**GOOD, "blur": 0.95}, "default", "main").decision is Decision.REJECT


def test_low_score_rejects():
    v = P.judge({**GOOD, "quality": 20.0}, "default", "main")
    assert v.decision is Decision.REJECT and ReasonCode.LOW_QUALITY in codes(v)


def test_resolution_threshold_depends_on_role():
    sig = {**GOOD, "width": 700, "height": 600}
    main = P.judge(sig, "default", "main")
    assert main.decision is Decision.DEMOTE
    assert main.reasons[0].message == "The photo is 600 px on its shortest side; main images need at least 800 px"
    assert P.judge(sig, "default", "gallery").decision is Decision.ACCEPT
    assert P.judge({**GOOD, "width": 150, "height": 150}, "default", "main").decision is Decision.REJECT


def test_aspect_ratio_and_contrast():
    assert ReasonCode.BAD_ASPECT_RATIO in codes(P.judge({**GOOD, "width": 4000, "height": 1000}, "default", "main"))
    assert ReasonCode.LOW_CONTRAST in codes(P.judge({**GOOD, "contrast": 0.01}, "default", "main"))


def test_profiles_differ_and_unknown_profile_falls_back_to_default():
    sig = {**GOOD, "quality": 50.0}
    assert P.judge(sig, "default", "main").decision is Decision.DEMOTE
    assert P.judge(sig, "lenient", "main").decision is Decision.ACCEPT
    assert P.judge(sig, "no-such-profile", "main").policy.name == "default"


def test_profile_selection_by_policy_then_role():
    assert P.profile_name("lenient", "main") == "lenient"  # a known name wins over the role
    assert P.profile_name(None, "main") == "main_image"
    assert P.profile_name(None, "gallery") == "default"
    assert P.profile_name("no-such-profile", "main") == "default"  # unknown names keep the old fallback
    assert P.judge(MAIN, None, "main").policy.name == "main_image"
    assert P.ref(None, "main").name == "main_image" and P.ref(None).name == "default"


def test_reject_helper_for_seller_side_problems():
    v = P.reject(None, ReasonCode.FETCH_FAILED, "HTTP 404")
    assert v.decision is Decision.REJECT and v.score == 0 and v.reasons[0].code is ReasonCode.FETCH_FAILED
    assert P.reject(None, ReasonCode.FETCH_FAILED, "HTTP 404", role="main").policy.name == "main_image"


def test_policy_file_version_was_bumped_for_the_new_rules():
    assert P.version != "2026.11.1"  # cache keys include it: old results must not be served under new rules


# --- boundaries of every main_image rule -------------------------------------------------
@pytest.mark.parametrize("signal,ok,bad,code", [
    ("background_white", 0.8, 0.7999, ReasonCode.BACKGROUND_NOT_WHITE),
    ("product_fill", 0.85, 0.8499, ReasonCode.PRODUCT_TOO_SMALL),
    ("border", 0.0099, 0.01, ReasonCode.BORDER),
    ("contrast", 0.04, 0.0399, ReasonCode.LOW_CONTRAST),
    ("overlay", 0.4999, 0.5, ReasonCode.TEXT_OR_WATERMARK),
    ("blur", 0.4999, 0.5, ReasonCode.BLURRY),
    ("noise", 0.4999, 0.5, ReasonCode.NOISY),
    ("compression", 0.4999, 0.5, ReasonCode.COMPRESSION_ARTIFACTS),
    ("underexposure", 0.4999, 0.5, ReasonCode.UNDEREXPOSED),
])
def test_main_image_rule_boundaries(signal, ok, bad, code):
    assert code not in codes(P.judge({**MAIN, signal: ok}, "main_image", "main"))
    v = P.judge({**MAIN, signal: bad}, "main_image", "main")
    (r,) = [r for r in v.reasons if r.code is code]
    assert r.value == pytest.approx(bad, abs=1e-4) and v.decision is not Decision.ACCEPT


def test_main_image_resolution_and_aspect_boundaries():
    assert P.judge({**MAIN, "width": 1000, "height": 1000}, "main_image", "main").decision is Decision.ACCEPT
    v = P.judge({**MAIN, "width": 999, "height": 1000}, "main_image", "main")
    assert v.decision is Decision.DEMOTE and codes(v) == {ReasonCode.LOW_RESOLUTION}
    assert P.judge({**MAIN, "width": 499, "height": 600}, "main_image", "main").decision is Decision.REJECT
    assert P.judge({**MAIN, "width": 2000, "height": 1000}, "main_image", "main").decision is Decision.ACCEPT
    assert codes(P.judge({**MAIN, "width": 2001, "height": 1000}, "main_image", "main")) == {ReasonCode.BAD_ASPECT_RATIO}


def test_main_image_rejects_what_suppresses_a_listing_and_demotes_the_rest():
    assert P.judge({**MAIN, "background_white": 0.3}, "main_image", "main").decision is Decision.REJECT
    assert P.judge({**MAIN, "border": 0.05}, "main_image", "main").decision is Decision.REJECT
    assert P.judge({**MAIN, "product_fill": 0.6}, "main_image", "main").decision is Decision.DEMOTE
    assert P.judge({**MAIN, "product_fill": 0.39}, "main_image", "main").decision is Decision.REJECT
    assert P.judge({**MAIN, "overlay": 0.85}, "main_image", "main").decision is Decision.REJECT
    # the same photos elsewhere: default only minds the border, lenient none of them
    assert P.judge({**MAIN, "background_white": 0.3, "product_fill": 0.3}, "default", "main").decision is Decision.ACCEPT
    assert P.judge({**MAIN, "border": 0.05}, "default", "main").decision is Decision.DEMOTE
    assert P.judge({**MAIN, "border": 0.05}, "lenient", "main").decision is Decision.ACCEPT


def test_seller_messages_carry_value_and_threshold():
    v = P.judge({**MAIN, "product_fill": 0.38}, "main_image", "main")
    assert [r.message for r in v.reasons] == ["The product fills 38 % of the frame; main images need at least 85 %"]
    v = P.judge({**MAIN, "background_white": 0.42}, "main_image", "main")
    assert "42 %" in v.reasons[0].message and "at least 80 %" in v.reasons[0].message
    v = P.judge({**MAIN, "border": 0.052}, "main_image", "main")
    assert "5.2 %" in v.reasons[0].message


def test_overexposure_head_is_not_used_on_a_pure_white_background():
    white = {**MAIN, "overexposure": 0.8, "product_fill": 0.9}
    assert ReasonCode.OVEREXPOSED not in codes(P.judge(white, "main_image", "main"))
    assert ReasonCode.OVEREXPOSED in codes(P.judge({**white, "background_white": 0.5}, "main_image", "main"))


def test_missing_signal_means_no_reason():
    sig = {k: v for k, v in MAIN.items() if k != "background_white"}
    assert ReasonCode.BACKGROUND_NOT_WHITE not in codes(P.judge(sig, "main_image", "main"))


# --- registry and model fit ---------------------------------------------------------------
def test_registry_covers_every_model_head_but_the_score():
    assert set(HEADS) == set(MODEL_HEADS) - {"quality"}
    assert len({RULES[h].code for h in HEADS}) == len(HEADS)


def test_check_model_accepts_the_model_heads_and_names_a_missing_one():
    P.check_model(tuple(MODEL_HEADS))
    with pytest.raises(ValueError, match=r"profile '\w+' checks overlay, which the model does not output"):
        P.check_model(tuple(h for h in MODEL_HEADS if h != "overlay"))
    with pytest.raises(ValueError, match="no 'quality' head"):
        P.check_model(tuple(h for h in MODEL_HEADS if h != "quality"))


def _file(tmp_path, profile_extra=None, top_extra=None):
    base = json.loads(DEFAULT_POLICY_FILE.read_text())
    base["profiles"]["default"].update(profile_extra or {})
    base.update(top_extra or {})
    p = tmp_path / "p.json"
    p.write_text(json.dumps(base))
    return p


@pytest.mark.parametrize("extra,top,message", [
    ({"heads": {"sharpness": 0.5}}, None, "profiles.default: heads: 'sharpness' is not a model head"),
    ({"measures": {"whiteness": 0.5}}, None, "measures: 'whiteness' is not a measured signal"),
    ({"measures": {"product_fill": {"demote": 0.5, "reject": 0.7}}}, None, "reject 0.7 must be beyond demote 0.5"),
    ({"reject_score": 90}, None, "reject_score 90.0 is above accept_score 60.0"),
    ({"accept_score": "high"}, None, "profiles.default.accept_score: Input should be a valid number"),
    ({"aspect_ratio": [2, 1]}, None, "aspect_ratio [2.0, 1.0] must be 0 < low <= high"),
    ({}, {"roles": {"main": "nope"}}, "roles name profiles that do not exist"),
    ({"bogus": 1}, None, "profiles.default.bogus: Extra inputs are not permitted"),
])
def test_bad_policy_files_are_refused_with_the_place_and_the_problem(tmp_path, extra, top, message):
    with pytest.raises(ValueError) as e:
        load_spec(_file(tmp_path, extra, top))
    assert message in str(e.value)


def test_unreadable_policy_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not JSON: .* line 1 column 2"):
        load_spec(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="cannot read"):
        load_spec(tmp_path / "missing.json")


def test_cropped_rule_follows_the_contract():
    spec = json.loads(DEFAULT_POLICY_FILE.read_text())
    spec["profiles"]["main_image"]["measures"]["product_cropped"] = 0.05
    if CROPPED_CODE is None:  # the contract (consumer/events.py) has no product_cropped code yet
        with pytest.raises(ValueError, match="needs reason code product_cropped"):
            PolicyFile.model_validate(spec)
    else:
        pol = Policy(PolicyFile.model_validate(spec))
        assert CROPPED_CODE in codes(pol.judge({**MAIN, "product_cropped": 0.3}, "main_image", "main"))


def test_profile_without_heads_uses_the_registry_defaults(tmp_path):
    base = json.loads(DEFAULT_POLICY_FILE.read_text())
    del base["profiles"]["lenient"]["heads"], base["profiles"]["lenient"]["reject_heads"]
    p = tmp_path / "p.json"
    p.write_text(json.dumps(base))
    pol = Policy.from_file(p)
    assert pol.judge({**GOOD, "noise": 0.5}, "lenient", "main").reasons[0].threshold == RULES["noise"].demote
    assert pol.judge({**GOOD, "blur": 0.95}, "lenient", "main").decision is Decision.REJECT  # registry reject 0.9


# --- a reject is never undone by a later, milder check --------------------------------------
def test_a_reject_level_failure_stays_a_reject_after_a_later_demote_level_one():
    # blur is checked before noise: 0.95 is over blur's reject limit, noise 0.6 only over its demote limit
    v = P.judge({**MAIN, "blur": 0.95, "noise": 0.6}, "main_image", "main")
    assert codes(v) == {ReasonCode.BLURRY, ReasonCode.NOISY}
    assert v.decision is Decision.REJECT
    # the resolution reject, found first, survives every head and measure checked after it
    v = P.judge({**MAIN, "width": 400, "height": 400, "noise": 0.6, "product_fill": 0.6}, "main_image", "main")
    assert v.decision is Decision.REJECT
    assert codes(v) == {ReasonCode.LOW_RESOLUTION, ReasonCode.NOISY, ReasonCode.PRODUCT_TOO_SMALL}


def test_reject_short_side_boundary():
    """main_image rejects under 500 px on the short side; exactly 500 px is only too small (demote)."""
    at = P.judge({**MAIN, "width": 500, "height": 600}, "main_image", "main")
    assert at.decision is Decision.DEMOTE and codes(at) == {ReasonCode.LOW_RESOLUTION}
    below = P.judge({**MAIN, "width": 499, "height": 600}, "main_image", "main")
    assert below.decision is Decision.REJECT and codes(below) == {ReasonCode.LOW_RESOLUTION}
    assert P.judge({**MAIN, "width": 600, "height": 500}, "main_image", "main").decision is Decision.DEMOTE


# --- gaps found by mutation testing (mutants that survived the tests above) ----------------
def test_score_boundaries_and_clamping():
    """accept_score and reject_score are "at least": a score exactly on them passes that line."""
    at_accept = P.judge({**MAIN, "quality": 60.0}, "main_image", "main")
    assert at_accept.decision is Decision.ACCEPT and at_accept.reasons == []
    at_reject = P.judge({**MAIN, "quality": 40.0}, "main_image", "main")
    assert at_reject.decision is Decision.DEMOTE and codes(at_reject) == {ReasonCode.LOW_QUALITY}
    below = P.judge({**MAIN, "quality": 39.99}, "main_image", "main")
    assert below.decision is Decision.REJECT
    (r,) = below.reasons
    assert (r.value, r.threshold) == (39.99, 60)
    # the model's raw output is clamped to 0..100, and reported to 2 decimals
    assert P.judge({**MAIN, "quality": 130.0}, "main_image", "main").score == 100.0
    assert P.judge({**MAIN, "quality": -3.0}, "main_image", "main").score == 0.0
    assert P.judge({**MAIN, "quality": 77.4567}, "main_image", "main").score == 77.46
    no_score = P.judge({k: v for k, v in MAIN.items() if k != "quality"}, "main_image", "main")
    assert no_score.score == 0.0 and no_score.decision is Decision.REJECT  # no score: never an accept


def test_reasons_carry_the_measured_value_and_the_threshold():
    (res,) = P.judge({**MAIN, "width": 900, "height": 1200}, "main_image", "main").reasons
    assert (res.code, res.value, res.threshold) == (ReasonCode.LOW_RESOLUTION, 900, 1000)
    (ratio,) = P.judge({**MAIN, "width": 3000, "height": 1400}, "main_image", "main").reasons
    assert (ratio.code, ratio.value, ratio.threshold) == (ReasonCode.BAD_ASPECT_RATIO, 2.143, "0.5-2.0")
    (noisy,) = P.judge({**MAIN, "noise": 0.612345}, "main_image", "main").reasons
    assert (noisy.value, noisy.threshold) == (0.6123, 0.5)


def test_aspect_ratio_lower_bound_is_inclusive_and_no_size_means_no_ratio():
    assert P.judge({**MAIN, "width": 1000, "height": 2000}, "main_image", "main").decision is Decision.ACCEPT
    assert codes(P.judge({**MAIN, "width": 1000, "height": 2001}, "main_image", "main")) == {ReasonCode.BAD_ASPECT_RATIO}
    unsized = P.judge({k: v for k, v in MAIN.items() if k not in ("width", "height")}, "main_image", "main")
    assert codes(unsized) == {ReasonCode.LOW_RESOLUTION} and unsized.decision is Decision.REJECT
    assert unsized.reasons[0].value == 0


def test_white_background_threshold_is_inclusive_for_the_overexposure_skip():
    on_white = {**MAIN, "overexposure": 0.8, "background_white": 0.9}
    assert ReasonCode.OVEREXPOSED not in codes(P.judge(on_white, "main_image", "main"))
    assert ReasonCode.OVEREXPOSED in codes(P.judge({**on_white, "background_white": 0.8999}, "main_image", "main"))


def test_heads_without_reject_heads_never_reject_on_a_head(tmp_path):
    base = json.loads(DEFAULT_POLICY_FILE.read_text())
    del base["profiles"]["main_image"]["reject_heads"]
    pol = Policy.from_file(_file(tmp_path, top_extra={"profiles": base["profiles"]}))
    v = pol.judge({**MAIN, "blur": 0.99, "overlay": 0.99}, "main_image", "main")
    assert v.decision is Decision.DEMOTE and codes(v) == {ReasonCode.BLURRY, ReasonCode.TEXT_OR_WATERMARK}


def test_reject_helper_keeps_the_requested_profile_value_and_threshold():
    v = P.reject("lenient", ReasonCode.TOO_LARGE, "image is 30000000 bytes", value=30_000_000, threshold=26_214_400)
    assert v.policy.name == "lenient"
    (r,) = v.reasons
    assert (r.value, r.threshold) == (30_000_000, 26_214_400)


def test_one_side_missing_is_no_ratio_and_no_crash():
    v = P.judge({k: val for k, val in MAIN.items() if k != "height"}, "main_image", "main")
    assert codes(v) == {ReasonCode.LOW_RESOLUTION} and v.decision is Decision.REJECT
    v = P.judge({k: val for k, val in MAIN.items() if k != "width"}, "main_image", "main")
    assert codes(v) == {ReasonCode.LOW_RESOLUTION} and v.decision is Decision.REJECT


def test_overexposure_is_checked_when_the_background_was_not_measured():
    sig = {k: v for k, v in {**GOOD, "overexposure": 0.8}.items() if k != "background_white"}
    assert ReasonCode.OVEREXPOSED in codes(P.judge(sig, "default", "main"))


def test_contrast_is_reported_as_a_number_not_a_percent():
    (r,) = P.judge({**GOOD, "contrast": 0.013}, "default", "main").reasons
    assert r.code is ReasonCode.LOW_CONTRAST and "(0.01, needs at least 0.04)" in r.message
