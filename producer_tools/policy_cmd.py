"""`imagegate policy check FILE` and `imagegate policy diff`: change a policy knowing what it does.

The policy is a pure function of an image's stored signals, so a candidate policy file can
be replayed over results already scored (an `image_scored` topic, `imagegate tail` or
`imagegate score --format jsonl` output) without fetching or scoring any image again.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TextIO

from consumer.policy import Policy, Verdict

DECISIONS = ("accept", "demote", "reject")


@dataclass
class Stored:
    """One stored verdict: what was decided, and the signals it was decided on."""

    key: str
    role: str
    profile: str | None
    decision: str
    reasons: list[dict[str, Any]]
    signals: dict[str, float]


@dataclass
class Move:
    stored: Stored
    new: Verdict

    @property
    def new_decision(self) -> str:
        return self.new.decision.value


@dataclass
class Diff:
    total: int = 0
    not_rejudged: int = 0  # no signals: decided before scoring (fetch failed, unreadable ...)
    transitions: Counter = field(default_factory=Counter)  # (old, new) -> n
    reasons_added: Counter = field(default_factory=Counter)
    reasons_removed: Counter = field(default_factory=Counter)
    moves: list[Move] = field(default_factory=list)  # decision changed


def stored_from(obj: Any, where: str) -> Stored | None:
    """Accepts an image_scored body, an `imagegate tail` line ({"value": body}) or a `score --format jsonl` row."""
    if isinstance(obj, dict) and isinstance(obj.get("value"), dict):
        obj = obj["value"]
    if not isinstance(obj, dict) or "decision" not in obj:
        return None
    signals = obj.get("signals") or {}
    if not isinstance(signals, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in signals.values()):
        raise ValueError(f"{where}: signals must be an object of numbers")
    key = obj.get("image_id") or obj.get("path") or where
    return Stored(str(key), str(obj.get("role") or "main"), (obj.get("policy") or {}).get("name"),
                  str(obj["decision"]), list(obj.get("reasons") or []), {k: float(v) for k, v in signals.items()})


def read_jsonl(paths: Iterable[Path]) -> list[Stored]:
    """Stored results from JSON-lines files; the path `-` is stdin (`imagegate tail ... | policy diff -`)."""
    out = []
    for path in paths:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text()
        path = "<stdin>" if str(path) == "-" else path
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{n}: not JSON: {e}") from None
            s = stored_from(obj, f"{path}:{n}")
            if s is not None:
                out.append(s)
    return out


def diff(stored: Iterable[Stored], new: Policy, profile: str | None = None) -> Diff:
    """Re-judge each stored result under `new` (profile: forced, else the one it was judged under)."""
    d = Diff()
    for s in stored:
        d.total += 1
        if not s.signals:
            d.not_rejudged += 1
            d.transitions[(s.decision, s.decision)] += 1
            continue
        v = new.judge(s.signals, profile or s.profile, s.role)
        d.transitions[(s.decision, v.decision.value)] += 1
        old_codes = {str(r.get("code")) for r in s.reasons}
        new_codes = {r.code.value for r in v.reasons}
        d.reasons_added.update(new_codes - old_codes)
        d.reasons_removed.update(old_codes - new_codes)
        if v.decision.value != s.decision:
            d.moves.append(Move(s, v))
    return d


def print_diff(d: Diff, new: Policy, out: TextIO, examples: int = 3) -> None:
    moved = len(d.moves)
    print(f"{d.total} stored results re-judged under policy {new.version}: {moved} change decision"
          + (f" ({d.not_rejudged} decided before scoring, unchanged)" if d.not_rejudged else ""), file=out)
    print("\nold \\ new   " + "".join(f"{x:>8}" for x in DECISIONS), file=out)
    for o in DECISIONS:
        print(f"{o:<12}" + "".join(f"{d.transitions[(o, x)]:>8}" for x in DECISIONS), file=out)
    if d.reasons_added or d.reasons_removed:
        print("\nreason        added  removed", file=out)
        for code in sorted(set(d.reasons_added) | set(d.reasons_removed)):
            print(f"{code:<22} {d.reasons_added[code]:>5} {d.reasons_removed[code]:>8}", file=out)
    by: dict[tuple[str, str], list[Move]] = defaultdict(list)
    for m in d.moves:
        by[(m.stored.decision, m.new_decision)].append(m)
    for (o, x), ms in sorted(by.items()):
        print(f"\n{o} -> {x}: {len(ms)}", file=out)
        for m in ms[:examples]:
            was = ", ".join(str(r.get("code")) for r in m.stored.reasons) or "no reasons"
            now = "; ".join(r.message for r in m.new.reasons) or "no reasons"
            print(f"  {m.stored.key} ({m.new.policy.name}): was {was}; now {now}", file=out)


def diff_json(d: Diff, new: Policy, examples: int = 3) -> dict[str, Any]:
    """`print_diff`'s content as one JSON object, for scripts (`policy diff --json`)."""
    by: dict[tuple[str, str], list[Move]] = defaultdict(list)
    for m in d.moves:
        by[(m.stored.decision, m.new_decision)].append(m)
    return {
        "policy_version": new.version, "total": d.total, "changed": len(d.moves), "not_rejudged": d.not_rejudged,
        "transitions": [{"old": o, "new": x, "count": n} for (o, x), n in sorted(d.transitions.items())],
        "reasons": [{"code": c, "added": d.reasons_added[c], "removed": d.reasons_removed[c]}
                    for c in sorted(set(d.reasons_added) | set(d.reasons_removed))],
        "examples": [{"key": m.stored.key, "old": o, "new": x, "profile": m.new.policy.name,
                      "old_reasons": [str(r.get("code")) for r in m.stored.reasons],
                      "new_reasons": [r.message for r in m.new.reasons]}
                     for (o, x), ms in sorted(by.items()) for m in ms[:examples]],
    }


def check(path: Path, heads: tuple[str, ...] | None = None) -> str:
    """Validate a policy file (and, given a model's heads, that it fits the model); returns a summary."""
    policy = Policy.from_file(path)
    if heads is not None:
        policy.check_model(heads)
    roles = ", ".join(f"{r} -> {p}" for r, p in policy.spec.roles.items()) or "none (every role: default)"
    return f"{path}: OK, version {policy.version}, profiles {', '.join(policy.spec.profiles)}; roles {roles}"
