"""The fate of each detection: audience, quiet hours, caps and the control arm, decided per user in
`(trigger_ts, action_id)` order as event time passes (DESIGN.md "Fate of a detection").

Pure Python, shared by every host: the host submits each enriched action, calls `release` with
its watermark and emits what comes back; `wakeup` says when to call again. Contract: an action
submitted after `release(state, w)` has `trigger_ts >= w` (it comes from an event at or after the
watermark), so deciding in watermark order is deciding in trigger order.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Iterable
from operator import attrgetter, itemgetter
from typing import NamedTuple

from schemas.action import Action, Fate
from schemas.rules import Rule
from udfs.campaign.assign import CONTROL
from udfs.campaign.quiet_hours import in_quiet_hours, window_end, zone_for
from udfs.filters import compile_profile_filter

_DESTINATION_BITS = {"kafka": 1, "braze": 2, "iterable": 4}
_trigger_ts = attrgetter("trigger_ts")
_first = itemgetter(0)
_queue_order = attrgetter("trigger_ts", "action_id")
_deliver_at = attrgetter("deliver_at")
_due_order = attrgetter("deliver_at", "trigger_ts", "action_id")


def _destination_mask(destinations: Iterable[str]) -> int:
    mask = 0
    for destination in destinations:
        mask |= _DESTINATION_BITS[destination]
    return mask


class Decided(NamedTuple):
    """One decision. `action.suppressed` is set for a suppressed fate, `action.deliver_at` for
    `deferred` (that action comes back once more, in `release`'s due list, when it is due)."""

    fate: Fate
    action: Action


class FateState:
    """What the fate step keeps for one user; empty (and droppable) when nothing is pending."""

    __slots__ = ("queue", "counted", "deferred")

    def __init__(self) -> None:
        # Submitted actions awaiting their fate, sorted by (trigger_ts, action_id).
        self.queue: list[Action] = []
        # (trigger_ts, destination bit mask) of every action that passed the caps, in decision
        # order; only while some cap's window may still hold it.
        self.counted: list[tuple[int, int]] = []
        # Deferred actions not yet due, sorted by (deliver_at, trigger_ts, action_id).
        self.deferred: list[Action] = []

    def __getstate__(self) -> tuple:
        return (self.queue, self.counted, self.deferred)

    def __setstate__(self, state: tuple) -> None:
        (self.queue, self.counted, self.deferred) = state

    def is_empty(self) -> bool:
        return not (self.queue or self.counted or self.deferred)

    def __repr__(self) -> str:
        return (
            f"FateState(queue={self.queue!r}, counted={self.counted!r}, deferred={self.deferred!r})"
        )


class FateStep:
    """The six steps for one rule set and its `limits`.

    `passthrough` is true when no rule has an audience or a holdout and there are no caps nor
    quiet hours: every action is `sent` as it comes, and a host may skip the queue entirely.
    """

    def __init__(self, rules: Iterable[Rule]):
        rules = list(rules) if not isinstance(rules, list) else rules
        limits = getattr(rules, "limits", None)
        self.audiences = {
            rule.id: compile_profile_filter(rule.audience) for rule in rules if rule.audience
        }
        # (max, per_ms, destination mask or 0 for every destination)
        self.caps: tuple[tuple[int, int, int], ...] = tuple(
            (cap.max, cap.per, _destination_mask(cap.destinations or ()))
            for cap in (limits.caps if limits else ())
        )
        self.longest_per_ms = max((per for _, per, _ in self.caps), default=0)
        self.quiet_hours = limits.quiet_hours if limits else None
        has_control = any(rule.experiment and rule.experiment.holdout > 0 for rule in rules)
        self.passthrough = not (self.audiences or self.caps or self.quiet_hours or has_control)

    def submit(self, state: FateState, action: Action) -> None:
        """Queue an enriched action (profile and `enrichment` set); the step now owns it."""
        insort(state.queue, action, key=_queue_order)

    def release(
        self, state: FateState, watermark: float, forget_until: float | None = None
    ) -> tuple[list[Decided], list[Action]]:
        """Decide every queued action with `trigger_ts < watermark`, in `(trigger_ts, action_id)`
        order, and hand back the deferred actions due by then (`deliver_at <= watermark`), in
        `(deliver_at, trigger_ts, action_id)` order, each once. `float('inf')` decides all.
        `forget_until`: the time below which no later action can come, when that is lower than
        `watermark` (a host forcing a decision on an idle input); counted actions are kept for
        caps up to it."""
        decided: list[Decided] = []
        queue = state.queue
        if queue and queue[0].trigger_ts < watermark:
            # An action at the watermark itself waits: another may still come from its event.
            ready = bisect_left(queue, watermark, key=_trigger_ts)
            actions = queue[:ready]
            del queue[:ready]
            if self.passthrough:
                decided = [Decided("sent", action) for action in actions]
            else:
                for action in actions:
                    decided.append(Decided(self._decide(state, action), action))
        counted = state.counted
        # Every later action has trigger_ts >= forget_until: its cap windows start after this.
        horizon = (watermark if forget_until is None else min(watermark, forget_until)) - (
            self.longest_per_ms
        )
        if counted and counted[0][0] <= horizon:
            del counted[: bisect_right(counted, horizon, key=_first)]
        due: list[Action] = []
        deferred = state.deferred
        if deferred and deferred[0].deliver_at <= watermark:
            ready = bisect_right(deferred, watermark, key=_deliver_at)
            due = deferred[:ready]
            del deferred[:ready]
        return decided, due

    def wakeup(self, state: FateState) -> int | None:
        """The lowest watermark at which `release` has work, or None: a timer for the host."""
        times = []
        if state.queue:
            times.append(state.queue[0].trigger_ts + 1)
        if state.deferred:
            times.append(state.deferred[0].deliver_at)
        return min(times) if times else None

    def forget_at(self, state: FateState) -> int | None:
        """The watermark from which a `release` leaves no counted action behind (the state is then
        empty unless more is queued or deferred); None when nothing is counted."""
        if not state.counted:
            return None
        return state.counted[-1][0] + self.longest_per_ms

    def is_empty(self, state: FateState) -> bool:
        return state.is_empty()

    def _decide(self, state: FateState, action: Action) -> Fate:
        audience = self.audiences.get(action.rule_id)
        if audience is not None:
            if action.enrichment != "ok":
                action.suppressed = "no_profile"
                return "no_profile"
            if not audience(action.profile):
                action.suppressed = "audience"
                return "audience"
        trigger_ts = action.trigger_ts
        quiet = self.quiet_hours
        quiet_zone = None
        if quiet is not None:
            zone = zone_for(action.profile, quiet.timezone, quiet.default_timezone)
            if in_quiet_hours(trigger_ts, zone, quiet.start, quiet.end):
                if quiet.mode == "drop":
                    action.suppressed = "quiet_hours"
                    return "quiet_hours"
                quiet_zone = zone
        if self.caps:
            mask = _destination_mask(action.destinations)
            if self._capped(state.counted, trigger_ts, mask):
                action.suppressed = "cap"
                return "cap"
            state.counted.append((trigger_ts, mask))
        if action.arm == CONTROL:
            action.suppressed = "control"
            return "control"
        if quiet_zone is not None:
            action.deliver_at = window_end(trigger_ts, quiet_zone, quiet.start, quiet.end)
            insort(state.deferred, action, key=_due_order)
            return "deferred"
        return "sent"

    def _capped(self, counted: list[tuple[int, int]], trigger_ts: int, mask: int) -> bool:
        for limit, per_ms, cap_mask in self.caps:
            if cap_mask and not cap_mask & mask:
                continue  # the cap names destinations this action does not use
            since = trigger_ts - per_ms
            held = 0
            for counted_ts, counted_mask in reversed(counted):
                if counted_ts <= since:
                    break
                if counted_ts <= trigger_ts and (not cap_mask or cap_mask & counted_mask):
                    held += 1
                    if held >= limit:
                        return True
        return False


def count_fates(decided: Iterable[Decided]) -> Counter:
    """Decisions per fate; `detected = sent + deferred + suppressed` holds by construction."""
    return Counter(fate for fate, _ in decided)
