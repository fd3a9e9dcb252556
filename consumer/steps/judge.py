"""Apply the marketplace policy: content (or a seller-side rejection) -> score, decision, reasons."""

from __future__ import annotations

from consumer.policy import Policy
from consumer.steps.base import NEXT, Flow
from consumer.work import WorkItem


class Judge:
    name = "judge"
    produces_content = False

    def __init__(self, policy: Policy):
        self.policy = policy

    def __call__(self, item: WorkItem) -> Flow:
        ev = item.event
        assert ev is not None
        if item.rejection is not None:
            item.verdict = self.policy.reject(ev.policy, item.rejection.code, item.rejection.message, role=ev.role)
        elif item.content is not None and item.content.reject is not None:
            r = item.content.reject
            item.verdict = self.policy.reject(ev.policy, r.code, r.message, role=ev.role)
            item.sha256 = item.content.sha256
        elif item.content is not None:
            item.verdict = self.policy.judge(item.content.signals, ev.policy, ev.role)
            item.sha256 = item.content.sha256
        else:
            raise RuntimeError("judge reached without content or rejection")
        return NEXT
