"""A host forcing a decision on an idle input (event time moved past the watermark for one user)
decides and releases, but forgets no counted action the watermark has not passed: the user's
later actions are still capped by them (udfs/campaign/fate.py `forget_until`)."""

from __future__ import annotations

from tests.unit.campaign.conftest import local_ms, make_action, make_rules
from udfs.campaign.fate import FateState, FateStep

T0 = local_ms("2025-06-02T12:00", "UTC")
CAP = {"caps": [{"max": 2, "per": "10s"}]}


def test_a_forced_release_keeps_counted_actions_for_later_ones():
    rules = make_rules({"id": "r"}, limits=CAP)
    step, state = FateStep(rules), FateState()
    step.submit(state, make_action(rules[0], T0))
    watermark = T0 + 1
    # Forced far past the cap's window, the real watermark still at T0 + 1.
    decided, _ = step.release(state, T0 + 60_000, forget_until=watermark)
    assert [d.fate for d in decided] == ["sent"] and state.counted == [(T0, 1)]
    for ts in (T0 + 5_000, T0 + 6_000):
        step.submit(state, make_action(rules[0], ts))
    decided, _ = step.release(state, T0 + 6_001)
    assert [d.fate for d in decided] == ["sent", "cap"]


def test_without_forget_until_the_watermark_forgets():
    rules = make_rules({"id": "r"}, limits=CAP)
    step, state = FateStep(rules), FateState()
    step.submit(state, make_action(rules[0], T0))
    step.release(state, T0 + 10_000)
    assert state.counted == []
