from consumer.config import DEFAULT_POLICY_FILE
from consumer.events import Decision, ReasonCode
from consumer.policy import Policy

P = Policy.from_file(DEFAULT_POLICY_FILE)
GOOD = {"quality": 80.0, "width": 1600, "height": 1200, "blur": 0.05, "noise": 0.05, "compression": 0.05,
        "underexposure": 0.05, "overexposure": 0.05, "overlay": 0.05, "contrast": 0.2}


def codes(v):
    return {r.code for r in v.reasons}


def test_good_image_is_accepted():
    v = P.judge(GOOD, None, "main")
    assert v.decision is Decision.ACCEPT and v.reasons == [] and v.score == 80.0
    assert v.policy.name == "default" and v.policy.version == P.version


def test_blurry_image_is_demoted_with_reason_and_values():
    v = P.judge({**GOOD, "blur": 0.7}, None, "main")
    assert v.decision is Decision.DEMOTE
    (r,) = v.reasons
    assert r.code is ReasonCode.BLURRY and r.value == 0.7 and r.threshold == 0.5


def test_very_blurry_image_is_rejected():
    assert P.judge({**GOOD, "blur": 0.95}, None, "main").decision is Decision.REJECT


def test_low_score_rejects():
    v = P.judge({**GOOD, "quality": 20.0}, None, "main")
    assert v.decision is Decision.REJECT and ReasonCode.LOW_QUALITY in codes(v)


def test_resolution_threshold_depends_on_role():
    sig = {**GOOD, "width": 700, "height": 600}
    main = P.judge(sig, None, "main")
    assert main.decision is Decision.DEMOTE and "shortest side 600 px, needs 800" in main.reasons[0].message
    assert P.judge(sig, None, "gallery").decision is Decision.ACCEPT
    assert P.judge({**GOOD, "width": 150, "height": 150}, None, "main").decision is Decision.REJECT


def test_aspect_ratio_and_contrast():
    assert ReasonCode.BAD_ASPECT_RATIO in codes(P.judge({**GOOD, "width": 4000, "height": 1000}, None, "main"))
    assert ReasonCode.LOW_CONTRAST in codes(P.judge({**GOOD, "contrast": 0.01}, None, "main"))


def test_profiles_differ_and_unknown_profile_falls_back_to_default():
    sig = {**GOOD, "quality": 50.0}
    assert P.judge(sig, None, "main").decision is Decision.DEMOTE
    assert P.judge(sig, "lenient", "main").decision is Decision.ACCEPT
    assert P.judge(sig, "no-such-profile", "main").policy.name == "default"


def test_reject_helper_for_seller_side_problems():
    v = P.reject(None, ReasonCode.FETCH_FAILED, "HTTP 404")
    assert v.decision is Decision.REJECT and v.score == 0 and v.reasons[0].code is ReasonCode.FETCH_FAILED
