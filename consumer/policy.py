"""Marketplace image policy: model outputs + measured signals -> score, decision, reasons.

Profiles live in a versioned JSON file (`consumer/policies/default.json` by default) so
marketplaces tune thresholds without a code change. The policy is a pure function of the
signals, which is why cached results can be re-judged under any profile and role.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consumer.events import Decision, PolicyRef, Reason, ReasonCode

# Model head -> (reason code, message template).
_HEAD_REASONS: dict[str, tuple[ReasonCode, str]] = {
    "blur": (ReasonCode.BLURRY, "image is blurry: hold the camera steady and focus on the product"),
    "noise": (ReasonCode.NOISY, "image is noisy (grainy): use more light"),
    "compression": (ReasonCode.COMPRESSION_ARTIFACTS, "image shows compression artefacts: upload the original file"),
    "underexposure": (ReasonCode.UNDEREXPOSED, "image is too dark: use more light"),
    "overexposure": (ReasonCode.OVEREXPOSED, "image is too bright: highlights are blown out"),
    "overlay": (ReasonCode.TEXT_OR_WATERMARK, "image has overlaid text or a watermark: remove it"),
}


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accept_score: float = Field(ge=0, le=100)
    reject_score: float = Field(ge=0, le=100)
    min_short_side: dict[str, int]
    reject_short_side: int = Field(ge=1)
    aspect_ratio: tuple[float, float]
    heads: dict[str, float] = Field(default_factory=dict)
    reject_heads: dict[str, float] = Field(default_factory=dict)
    min_contrast: float = 0.0


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str = Field(min_length=1)
    profiles: dict[str, Profile]


@dataclass(frozen=True)
class Verdict:
    score: float
    decision: Decision
    reasons: list[Reason]
    policy: PolicyRef


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
        try:
            spec = PolicyFile.model_validate(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, ValidationError) as e:
            raise ValueError(f"policy file {path}: {e}") from None
        return cls(spec, default_profile)

    def profile_name(self, requested: str | None) -> str:
        """Unknown profile names fall back to the default one (and say so in the policy ref)."""
        return requested if requested in self.spec.profiles else self.default_profile

    def ref(self, requested: str | None) -> PolicyRef:
        return PolicyRef(name=self.profile_name(requested), version=self.version)

    def reject(self, requested: str | None, code: ReasonCode, message: str, value: Any = None, threshold: Any = None) -> Verdict:
        """A seller-side problem found before scoring (fetch failed, not an image, ...)."""
        return Verdict(0.0, Decision.REJECT, [Reason(code=code, message=message, value=value, threshold=threshold)], self.ref(requested))

    def judge(self, signals: dict[str, float], requested: str | None, role: str) -> Verdict:
        name = self.profile_name(requested)
        p = self.spec.profiles[name]
        reasons: list[Reason] = []
        rejecting = False
        score = float(min(100.0, max(0.0, signals.get("quality", 0.0))))

        w, h = signals.get("width", 0.0), signals.get("height", 0.0)
        short = min(w, h)
        need = p.min_short_side.get(role, max(p.min_short_side.values(), default=0))
        if short < need:
            reasons.append(Reason(code=ReasonCode.LOW_RESOLUTION, message=f"shortest side {short:.0f} px, needs {need}", value=short, threshold=need))
            rejecting |= short < p.reject_short_side
        if w > 0 and h > 0:
            ratio = w / h
            lo, hi = p.aspect_ratio
            if not lo <= ratio <= hi:
                reasons.append(Reason(code=ReasonCode.BAD_ASPECT_RATIO, message=f"aspect ratio {ratio:.2f} is outside {lo}-{hi}", value=round(ratio, 3), threshold=f"{lo}-{hi}"))
        for head, threshold in p.heads.items():
            value = signals.get(head)
            if value is None or head not in _HEAD_REASONS or value < threshold:
                continue
            code, message = _HEAD_REASONS[head]
            reasons.append(Reason(code=code, message=message, value=round(value, 4), threshold=threshold))
            rejecting |= value >= p.reject_heads.get(head, 2.0)
        contrast = signals.get("contrast")
        if contrast is not None and contrast < p.min_contrast:
            reasons.append(Reason(code=ReasonCode.LOW_CONTRAST, message="image has very low contrast", value=round(contrast, 4), threshold=p.min_contrast))

        if score < p.reject_score:
            rejecting = True
        if score < p.accept_score and not any(r.code is ReasonCode.LOW_QUALITY for r in reasons):
            reasons.append(Reason(code=ReasonCode.LOW_QUALITY, message=f"overall quality {score:.0f}/100 is below {p.accept_score:.0f}", value=round(score, 2), threshold=p.accept_score))
        if rejecting:
            decision = Decision.REJECT
        elif reasons:
            decision = Decision.DEMOTE
        else:
            decision = Decision.ACCEPT
        return Verdict(round(score, 2), decision, reasons, PolicyRef(name=name, version=self.version))
