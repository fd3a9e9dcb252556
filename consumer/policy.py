"""Marketplace image policy: model outputs + measured signals -> score, decision, reasons.

Profiles live in a versioned JSON file (`consumer/policies/default.json` by default) so
marketplaces tune thresholds without a code change. The policy is a pure function of the
signals, which is why cached results can be re-judged under any profile and role, and why
`imagegate policy diff` can replay a new file over stored signals without fetching anything.

`RULES` is the one registry of what can be checked: each model head or measured signal,
the reason code it emits, the seller message (with the measured value and the threshold),
the direction of the limit and its default thresholds. Profiles only carry numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from consumer.events import Decision, PolicyRef, Reason, ReasonCode


@dataclass(frozen=True)
class Rule:
    """One checkable signal. `direction` "max": values at or above the limit fail; "min": below it."""

    signal: str
    code: ReasonCode
    direction: Literal["min", "max"]
    message: str  # str.format fields: value, threshold (both as % when `percent`), audience
    demote: float
    reject: float | None = None
    percent: bool = True
    head: bool = False  # a model output (must exist in the loaded model)
    # Not checked on a pure-white background (background_white >= WHITE_BACKGROUND): the model reads
    # the white a main image must have as blown-out highlights (product eval: most white-background
    # photos with the product under ~60 % of the frame were flagged "overexposed").
    skip_on_white: bool = False


WHITE_BACKGROUND = 0.9  # background_white at or above this is a deliberate white background


def _head(signal: str, code: ReasonCode, what: str, fix: str, reject: float | None = None, skip_on_white: bool = False) -> Rule:
    return Rule(signal, code, "max", f"The photo looks {what} (model confidence {{value}} %, limit {{threshold}} %): {fix}",
                0.5, reject, head=True, skip_on_white=skip_on_white)


RULES: dict[str, Rule] = {r.signal: r for r in (
    _head("blur", ReasonCode.BLURRY, "blurry", "hold the camera steady and focus on the product", reject=0.9),
    _head("noise", ReasonCode.NOISY, "grainy (noisy)", "use more light or a lower ISO"),
    _head("compression", ReasonCode.COMPRESSION_ARTIFACTS, "over-compressed (blocky)", "upload the original file"),
    _head("underexposure", ReasonCode.UNDEREXPOSED, "too dark", "use more light"),
    _head("overexposure", ReasonCode.OVEREXPOSED, "too bright, with blown-out highlights", "reduce the light or exposure",
          skip_on_white=True),
    _head("overlay", ReasonCode.TEXT_OR_WATERMARK, "to carry added text, a logo or a watermark",
          "remove overlays; show only the product"),
    Rule("background_white", ReasonCode.BACKGROUND_NOT_WHITE, "min",
         "The background is not pure white: {value} % of the area along the photo's edges is white; "
         "{audience} need at least {threshold} %", 0.8),
    Rule("product_fill", ReasonCode.PRODUCT_TOO_SMALL, "min",
         "The product fills {value} % of the frame; {audience} need at least {threshold} %", 0.85),
    Rule("border", ReasonCode.BORDER, "max",
         "The photo has an added border or frame {value} % of the picture deep; remove borders and frames "
         "({audience} allow under {threshold} %)", 0.01),
    Rule("contrast", ReasonCode.LOW_CONTRAST, "min",
         "The photo has very low contrast ({value}, needs at least {threshold}): use brighter, more even light",
         0.04, percent=False),
)}
# Cropped product ("foreground touching the frame edge"): its reason code is new in the contract.
# Until consumer/events.py has ReasonCode.PRODUCT_CROPPED the rule cannot be emitted, and a
# profile naming it fails to load (so nobody believes it is checked).
CROPPED_CODE: ReasonCode | None = ReasonCode._value2member_map_.get("product_cropped")  # type: ignore[assignment]
if CROPPED_CODE is not None:
    RULES["product_cropped"] = Rule(
        "product_cropped", CROPPED_CODE, "max",
        "The product is cut off at the edge of the photo (it covers {value} % of one edge); show the whole product "
        "with a white margin ({audience} allow under {threshold} %)", 0.05)

HEADS: tuple[str, ...] = tuple(s for s, r in RULES.items() if r.head)
# The model head the 0-100 score is read from (not a rule: accept_score and reject_score judge it).
SCORE_HEAD = "quality"


class Limit(BaseModel):
    """Thresholds of one rule in one profile; a bare number in the file means {"demote": n}."""

    model_config = ConfigDict(extra="forbid")

    demote: float
    reject: float | None = None


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    audience: str | None = Field(default=None, description='Who the rules are for, in seller words ("main images"); default "<role> images".')
    accept_score: float = Field(ge=0, le=100)
    reject_score: float = Field(ge=0, le=100)
    min_short_side: dict[str, int]
    reject_short_side: int = Field(ge=1)
    aspect_ratio: tuple[float, float]
    heads: dict[str, float] | None = Field(default=None, description="Head -> demote threshold; null = every head at its registry default.")
    reject_heads: dict[str, float] | None = None
    min_contrast: float = 0.0
    measures: dict[str, Limit | float] = Field(default_factory=dict, description="Measured signal -> thresholds (background_white, product_fill, border, product_cropped).")

    @model_validator(mode="after")
    def _check(self) -> "Profile":
        errors = []
        if self.reject_score > self.accept_score:
            errors.append(f"reject_score {self.reject_score} is above accept_score {self.accept_score}")
        lo, hi = self.aspect_ratio
        if not 0 < lo <= hi:
            errors.append(f"aspect_ratio [{lo}, {hi}] must be 0 < low <= high")
        for head in list(self.heads or {}) + list(self.reject_heads or {}):
            if head not in RULES or not RULES[head].head:
                errors.append(f"heads: {head!r} is not a model head with a reason code (known: {', '.join(HEADS)})")
        for name in self.measures:
            if name == "product_cropped" and CROPPED_CODE is None:
                errors.append("measures: 'product_cropped' needs reason code product_cropped, which this contract "
                              "(consumer/events.py ReasonCode) does not have yet")
            elif name not in RULES or RULES[name].head or name == "contrast":
                known = [s for s, r in RULES.items() if not r.head and s != "contrast"]
                errors.append(f"measures: {name!r} is not a measured signal with a rule (known: {', '.join(known)})")
        for name, lim in self.measures.items():
            if isinstance(lim, Limit) and lim.reject is not None and name in RULES:
                worse = lim.reject > lim.demote if RULES[name].direction == "max" else lim.reject < lim.demote
                if not worse and lim.reject != lim.demote:
                    errors.append(f"measures.{name}: reject {lim.reject} must be beyond demote {lim.demote} "
                                  f"({'higher' if RULES[name].direction == 'max' else 'lower'} is worse)")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def head_limits(self) -> dict[str, Limit]:
        """Heads checked by this profile; leaving `heads` out means every head at its registry default."""
        demote = self.heads if self.heads is not None else {h: RULES[h].demote for h in HEADS}
        if self.reject_heads is not None:
            reject = self.reject_heads
        elif self.heads is None:
            reject = {h: RULES[h].reject for h in HEADS if RULES[h].reject is not None}
        else:
            reject = {}
        return {h: Limit(demote=t, reject=reject.get(h)) for h, t in demote.items()}

    def measure_limits(self) -> dict[str, Limit]:
        out = {k: v if isinstance(v, Limit) else Limit(demote=v) for k, v in self.measures.items()}
        if self.min_contrast > 0:
            out["contrast"] = Limit(demote=self.min_contrast)
        return out


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str = Field(min_length=1)
    profiles: dict[str, Profile]
    roles: dict[str, str] = Field(default_factory=dict, description="Event role -> profile, used when an event names no policy.")

    @model_validator(mode="after")
    def _roles_exist(self) -> "PolicyFile":
        bad = {r: p for r, p in self.roles.items() if p not in self.profiles}
        if bad:
            raise ValueError(f"roles name profiles that do not exist: {bad} (profiles: {sorted(self.profiles)})")
        return self


@dataclass(frozen=True)
class Verdict:
    score: float
    decision: Decision
    reasons: list[Reason]
    policy: PolicyRef


def _pct(x: float) -> str:
    """Seller-facing percent: '38', '85', '0.5' (no false precision, never '0' for a real share)."""
    v = x * 100
    return f"{v:.0f}" if v >= 10 or v == 0 or v.is_integer() else f"{v:.1f}"


def load_spec(path: Path) -> PolicyFile:
    """Parse and validate a policy file; ValueError with every problem, each with its location."""
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as e:
        raise ValueError(f"policy file {path}: cannot read: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"policy file {path}: not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    try:
        return PolicyFile.model_validate(raw)
    except ValidationError as e:
        parts = []
        for err in e.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-after", "Limit", "float")))
            parts.append(f"{loc or 'file'}: {err['msg'].removeprefix('Value error, ')}")
        raise ValueError(f"policy file {path}: " + "; ".join(dict.fromkeys(parts))) from None


class Policy:
    """Loaded policy file; `judge()` is pure and thread-safe."""

    def __init__(self, spec: PolicyFile, default_profile: str = "default"):
        if default_profile not in spec.profiles:
            raise ValueError(f"default policy profile {default_profile!r} not in policy file (has {sorted(spec.profiles)})")
        self.spec = spec
        self.version = spec.version
        self.default_profile = default_profile

    @classmethod
    def from_file(cls, path: Path, default_profile: str = "default") -> "Policy":
        return cls(load_spec(path), default_profile)

    def check_model(self, heads: tuple[str, ...]) -> None:
        """Fail fast at worker start when a profile needs a head the loaded model lacks."""
        have = set(heads)
        problems = [] if SCORE_HEAD in have else [f"the model has no {SCORE_HEAD!r} head (the score)"]
        for name, p in self.spec.profiles.items():
            missing = sorted(set(p.head_limits()) - have)
            if missing:
                problems.append(f"profile {name!r} checks {', '.join(missing)}, which the model does not output "
                                f"(model heads: {', '.join(heads)})")
        if problems:
            raise ValueError("policy does not fit the model: " + "; ".join(problems))

    def profile_name(self, requested: str | None, role: str | None = None) -> str:
        """A known `policy` name wins; no name: the file's profile for the role; else the default.

        An unknown name falls back to the default profile (and the output's policy ref says so).
        """
        if requested in self.spec.profiles:
            return requested  # type: ignore[return-value]
        if requested is None and role in self.spec.roles:
            return self.spec.roles[role]  # type: ignore[index]
        return self.default_profile

    def ref(self, requested: str | None, role: str | None = None) -> PolicyRef:
        return PolicyRef(name=self.profile_name(requested, role), version=self.version)

    def reject(self, requested: str | None, code: ReasonCode, message: str, value: Any = None, threshold: Any = None,
               role: str | None = None) -> Verdict:
        """A seller-side problem found before scoring (fetch failed, not an image, ...)."""
        return Verdict(0.0, Decision.REJECT, [Reason(code=code, message=message, value=value, threshold=threshold)],
                       self.ref(requested, role))

    def judge(self, signals: dict[str, float], requested: str | None, role: str) -> Verdict:
        name = self.profile_name(requested, role)
        p = self.spec.profiles[name]
        audience = p.audience or f"{role} images"
        reasons: list[Reason] = []
        rejecting = False
        score = float(min(100.0, max(0.0, signals.get(SCORE_HEAD, 0.0))))

        w, h = signals.get("width", 0.0), signals.get("height", 0.0)
        short = min(w, h)
        need = p.min_short_side.get(role, max(p.min_short_side.values(), default=0))
        if short < need:
            reasons.append(Reason(code=ReasonCode.LOW_RESOLUTION, value=short, threshold=need,
                                  message=f"The photo is {short:.0f} px on its shortest side; {audience} need at least {need} px"))
            rejecting |= short < p.reject_short_side
        if w > 0 and h > 0:
            ratio = w / h
            lo, hi = p.aspect_ratio
            if not lo <= ratio <= hi:
                reasons.append(Reason(code=ReasonCode.BAD_ASPECT_RATIO, value=round(ratio, 3), threshold=f"{lo}-{hi}",
                                      message=f"The photo is {ratio:.2f} times as wide as it is high; "
                                              f"{audience} need a width:height ratio from {lo} to {hi}"))
        for signal, lim in {**p.head_limits(), **p.measure_limits()}.items():
            value = signals.get(signal)
            if value is None:
                continue  # not measured for this image (e.g. a model without that head): nothing to say
            rule = RULES[signal]
            if rule.skip_on_white and signals.get("background_white", 0.0) >= WHITE_BACKGROUND:
                continue
            fails = (lambda t: value >= t) if rule.direction == "max" else (lambda t: value < t)
            if not fails(lim.demote):
                continue
            fmt = _pct if rule.percent else (lambda x: f"{x:.2f}")
            reasons.append(Reason(code=rule.code, value=round(value, 4), threshold=lim.demote,
                                  message=rule.message.format(value=fmt(value), threshold=fmt(lim.demote), audience=audience)))
            rejecting |= lim.reject is not None and fails(lim.reject)

        if score < p.reject_score:
            rejecting = True
        if score < p.accept_score:
            reasons.append(Reason(code=ReasonCode.LOW_QUALITY, value=round(score, 2), threshold=p.accept_score,
                                  message=f"Overall photo quality is {score:.0f}/100; {audience} need at least {p.accept_score:.0f}"))
        if rejecting:
            decision = Decision.REJECT
        elif reasons:
            decision = Decision.DEMOTE
        else:
            decision = Decision.ACCEPT
        return Verdict(round(score, 2), decision, reasons, PolicyRef(name=name, version=self.version))
