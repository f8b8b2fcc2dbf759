"""Enrichment inside the detection operator: lookups run ahead on background threads, and an
action whose profile is not known yet is held, never the operator.

`prefetch` starts a lookup when one of the user's events may lead to an action, so by the time
the watermark releases the action (at least one out-of-orderness bound later) the profile is
usually cached and `on_action` enriches it at once. Otherwise the action is kept in the user's
keyed state (it survives checkpoints: a restart emits it, at least once) with processing-time
timers a few ms later and at the end of the lookup budget; `on_timer` emits it as soon as the
profile is known, or `unavailable` when the budget ran out. `block` (file mode, where no live
timer fires after the input ends) waits for the lookup instead, within the same budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.action import Action
from udfs.crm.base import LookupResult
from udfs.crm.prefetch import ProfilePrefetcher
from udfs.enrich import enrich
from udfs.host import TimerContext, ValueState, wall_clock_ms

#: Re-checks of a held action after it fired (ms); then one just after its lookup's own budget
#: ends (+ LOOKUP_END_SLACK_MS), and the action's budget's end is the last check.
RECHECK_AFTER_MS = (5, 25)
LOOKUP_END_SLACK_MS = 5
#: Users remembered as holding nothing before the set starts over (memory bound).
MAX_KNOWN_EMPTY = 200_000  # ~15 MB of user ids; beyond, a re-read per user
TIMED_OUT = LookupResult("unavailable", reason="timeout")
FAILING = LookupResult("unavailable", reason="crm failing")


class InlineEnrichment:
    """Holds and enriches the actions of one operator; `held` is a keyed ValueState holding the
    current user's `[(action, deadline_ms)]`. `record` is called with each lookup result used
    (metrics), `on_hold` with each action held.

    Nearly every user holds nothing, and reading `held` is a call into the JVM: the users whose
    `held` this instance read empty or cleared are remembered (`known_empty`) and not read again
    until one of their actions is held. A new instance (a restart, a rescale) knows no one, so
    it reads what a checkpoint may have restored."""

    def __init__(
        self,
        prefetcher: ProfilePrefetcher,
        held: ValueState,
        *,
        budget_ms: int,
        block: bool = False,
        clock: Callable[[], int] = wall_clock_ms,
        record: Callable[[LookupResult], Any] = lambda result: None,
        on_hold: Callable[[], Any] = lambda: None,
    ):
        self.prefetcher = prefetcher
        self.held = held
        self.budget_ms = budget_ms
        self.block = block
        self.clock = clock
        self.record = record
        self.on_hold = on_hold
        self.known_empty: set[str] = set()

    def prefetch(self, user_id: str) -> None:
        self.prefetcher.request(user_id)

    def on_action(self, ctx: TimerContext, action: Action) -> list[Action]:
        """The enriched action now, or [] when it is held for its profile."""
        result = self.prefetcher.ready(action.user_id)
        if result is None and self.block:
            result = self.prefetcher.wait(action.user_id, self.budget_ms / 1000)
        elif result is None and self.prefetcher.failing():
            # The CRM's latest lookups failed: this one would most likely run out of its budget
            # too, so the action does not wait for it (detection is not slowed by held actions);
            # the lookup still runs, in the background, and its success clears `failing`.
            self.prefetcher.request(action.user_id)
            result = FAILING
        if result is not None:
            # Earlier actions of this user still held go first: a user's actions keep their order.
            earlier = self.held_actions(action.user_id)
            if earlier:
                self.held.clear()
                self._known_empty(action.user_id)
            out = [self._enriched(held, result) for held, _ in earlier or ()]
            return [*out, self._enriched(action, result)]
        self.prefetcher.request(action.user_id)
        self.on_hold()
        now = self.clock()
        deadline = now + self.budget_ms
        held = self.held_actions(action.user_id) or []
        held.append((action, deadline))
        self.held.update(held)
        self.known_empty.discard(action.user_id)
        timers = ctx.timer_service()
        checks = {now + after for after in RECHECK_AFTER_MS}
        lookup_left = self.prefetcher.remaining_ms(action.user_id)
        if lookup_left is not None:
            # A lookup started earlier (prefetch) answers, at the latest, when its budget ends.
            checks.add(now + int(lookup_left) + LOOKUP_END_SLACK_MS)
        for at in sorted(checks):
            if at < deadline:
                timers.register_processing_time_timer(at)
        timers.register_processing_time_timer(deadline)
        return []

    def held_actions(self, user_id: str) -> list | None:
        """The user's held `[(action, deadline_ms)]` (the current key's), or None."""
        if user_id in self.known_empty:
            return None
        held = self.held.value()
        if not held:
            self._known_empty(user_id)
        return held

    def _known_empty(self, user_id: str) -> None:
        if len(self.known_empty) >= MAX_KNOWN_EMPTY:
            self.known_empty.clear()
        self.known_empty.add(user_id)

    def on_timer(self, ctx: TimerContext) -> list[Action]:
        """A processing-time timer of the current user: its held actions whose profile is known
        or whose budget ran out, enriched; the rest stay held."""
        user_id = ctx.get_current_key()
        held = self.held_actions(user_id)
        if not held:
            return []
        now = self.clock()
        result = self.prefetcher.ready(user_id)
        out, keep = [], []
        for action, deadline in held:
            if result is not None:
                out.append(self._enriched(action, result))
            elif now >= deadline:
                out.append(self._enriched(action, TIMED_OUT))
            else:
                keep.append((action, deadline))
        if keep:
            self.held.update(keep)
        else:
            self.held.clear()
            self._known_empty(user_id)
        return out

    def _enriched(self, action: Action, result: LookupResult) -> Action:
        self.record(result)
        return enrich(action, result)
