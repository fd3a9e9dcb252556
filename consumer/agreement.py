"""How far a candidate's verdicts agree with the default's: the counts `/metrics` exports live
and `imagegate shadow report` prints from the shadow topic, computed the same way for both.

Decisions are compared as a 3x3 confusion table (default decision x candidate decision);
reason codes per image as a set comparison (in both verdicts, the default's only, the
candidate's only), so a candidate that demotes for a different reason shows even when the
decision agrees.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

DECISIONS = ("accept", "demote", "reject")
REASON_OUTCOMES = ("both", "default_only", "candidate_only")


def reason_outcomes(default: Iterable[str], candidate: Iterable[str]) -> list[tuple[str, str]]:
    """(code, outcome) for every code in either verdict, sorted by code."""
    d, c = set(default), set(candidate)
    return [(code, "both" if code in d and code in c else "default_only" if code in d else "candidate_only")
            for code in sorted(d | c)]


@dataclass
class Agreement:
    decisions: Counter = field(default_factory=Counter)  # (default, candidate) -> images
    reasons: Counter = field(default_factory=Counter)  # (code, outcome) -> images

    def add(self, default_decision: str, candidate_decision: str, default_codes: Iterable[str],
            candidate_codes: Iterable[str]) -> list[tuple[str, str]]:
        self.decisions[(default_decision, candidate_decision)] += 1
        outcomes = reason_outcomes(default_codes, candidate_codes)
        for key in outcomes:
            self.reasons[key] += 1
        return outcomes

    @property
    def total(self) -> int:
        return sum(self.decisions.values())

    @property
    def agreed(self) -> int:
        return sum(n for (d, c), n in self.decisions.items() if d == c)

    def table(self) -> dict[str, dict[str, int]]:
        """default decision -> candidate decision -> images (every cell present)."""
        return {d: {c: self.decisions.get((d, c), 0) for c in DECISIONS} for d in DECISIONS}

    def per_reason(self) -> dict[str, dict[str, int]]:
        codes = sorted({code for code, _ in self.reasons})
        return {code: {o: self.reasons.get((code, o), 0) for o in REASON_OUTCOMES} for code in codes}
