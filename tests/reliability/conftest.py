"""Reliability suite helpers: event streams, a timing collector, exact reconciliation and the
summary table printed at the end of the run."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import pytest

ROWS: list["Row"] = []


@dataclass
class Row:
    scenario: str
    events_in: int
    events_out: int
    lost: int
    duplicates: int
    recovery_s: float | None
    note: str = ""

    def line(self) -> str:
        rec = "-" if self.recovery_s is None else f"{self.recovery_s:.1f}s"
        return (f"| {self.scenario:<34} | {self.events_in:>6} | {self.events_out:>6} | {self.lost:>4} | "
                f"{self.duplicates:>5} | {rec:>8} | {self.note}")


HEADER = (f"| {'scenario':<34} | {'in':>6} | {'out':>6} | {'lost':>4} | {'dups':>5} | {'recovery':>8} | note\n"
          f"|{'-' * 36}|{'-' * 8}|{'-' * 8}|{'-' * 6}|{'-' * 7}|{'-' * 10}|------")


def pytest_terminal_summary(terminalreporter):
    if ROWS:
        terminalreporter.write_sep("=", "reliability reconciliation")
        terminalreporter.write_line(HEADER)
        for r in ROWS:
            terminalreporter.write_line(r.line())


class Progress:
    """Wraps a Collector: remembers when each output arrived, so recovery times can be read off."""

    def __init__(self, collector):
        self.c = collector
        self.arrivals: list[float] = []  # monotonic time of each output record (scored or DLQ)

    def poll(self, seconds: float) -> None:
        n = len(self.c.scored) + len(self.c.dlq)
        self.c.poll(seconds)
        now = time.monotonic()
        self.arrivals += [now] * (len(self.c.scored) + len(self.c.dlq) - n)

    def done(self) -> int:
        return len(self.c.source_ids())

    def until(self, pred, timeout: float, alive=lambda: True) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.3)
            if pred():
                return True
            if not alive():
                return False
        return pred()

    def first_scored_after(self, wall: float) -> float | None:
        """Seconds from wall-clock time `wall` to the earliest `scored_at` after it (worker-side time)."""
        from datetime import datetime

        ts = [datetime.fromisoformat(b["scored_at"]).timestamp() for b in self.c.scored]
        later = [x for x in ts if x > wall]
        return (min(later) - wall) if later else None

    def first_output_after(self, t: float) -> float | None:
        later = [a for a in self.arrivals if a > t]
        return (later[0] - t) if later else None


def reconcile(scenario: str, event_ids: list[str], progress: Progress, recovery_s: float | None, note: str = "") -> Row:
    """Exact reconciliation: every input event_id must have an output (image_scored or DLQ)."""
    import json

    c = progress.c
    counts = Counter(b["source_event_id"] for b in c.scored)
    for value, _ in c.dlq:
        try:
            counts[json.loads(value)["event_id"]] += 1
        except (ValueError, KeyError, TypeError):
            counts["<unparseable dlq record>"] += 1
    wanted = set(event_ids)
    assert len(wanted) == len(event_ids), "test bug: event ids not unique"
    lost = len(wanted - set(counts))
    dups = sum(n - 1 for eid, n in counts.items() if eid in wanted)
    strangers = set(counts) - wanted
    row = Row(scenario, len(event_ids), sum(counts.values()), lost, dups, recovery_s, note)
    ROWS.append(row)
    print("\n" + HEADER + "\n" + row.line())
    assert not strangers, f"outputs for events never sent: {list(strangers)[:5]}"
    return row


@pytest.fixture
def stream_images(images):
    """A handful of distinct images (the `images` fixture: 3 seeds x 4 variants) as names."""
    return sorted(p.name for p in images.iterdir())
