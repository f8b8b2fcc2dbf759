"""The campaign step inside the detect operator: fates and outcomes of a user's detections
(udfs/campaign/step.py) over keyed state and Flink's timers, as output rows.

Keyed state "campaign" holds a CampaignState per user (pickled). Its wakeups (an action waiting
for event time to pass its trigger_ts, a deferred action's deliver_at) are event-time timers of
the operator; with idle forcing on, a processing-time timer too, so an idle input never strands a
decided-later action (DESIGN.md's liveness).
"""

from __future__ import annotations

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream.state import ValueStateDescriptor

from jobs.operators.rows import KIND_OUTCOME, KIND_SUPPRESSED
from udfs.campaign.step import ACTION, OUTCOME, SUPPRESSED, CampaignState, CampaignStep
from udfs.host import event_time, idle_force_due
from udfs.model import Fire
from udfs.timing import round_up

_KINDS = {ACTION: "action", SUPPRESSED: KIND_SUPPRESSED, OUTCOME: KIND_OUTCOME}


class CampaignOperator:
    """Per operator instance; `run` takes a user's new actions (enriched, in order) and goal
    results, releases what event time allows and returns output rows."""

    def __init__(self, engine, host, runtime_context):
        self.step = CampaignStep(engine)
        self.host = host
        self.state = runtime_context.get_state(
            ValueStateDescriptor("campaign", Types.PICKLED_BYTE_ARRAY())
        )
        self._metrics = runtime_context.get_metrics_group().add_group("campaign")
        self._counters: dict[tuple, object] = {}

    def _count(self, *key) -> None:
        """campaign.fate_<fate>, and campaign.rule.<id>.arm.<arm>.outcomes_[not_]converted."""
        counter = self._counters.get(key)
        if counter is None:
            if key[0] == "fate":
                counter = self._metrics.counter(f"fate_{key[1]}")
            else:
                _, rule_id, arm, converted = key
                group = self._metrics.add_group("rule", rule_id).add_group("arm", arm or "none")
                counter = group.counter(
                    "outcomes_converted" if converted else "outcomes_not_converted"
                )
            counter = self._counters[key] = counter
        counter.inc()

    def on_timer(self, operator, ctx, fires, detected_at: int, processing: bool = False):
        """A timer of the detect `operator` (or a release of held events): its actions
        (enriched, or held for their profile by `operator.enrich_now`) and goal results through
        the step; a `processing`-time timer may also be the campaign's idle forcing."""
        user_id = ctx.get_current_key()
        actions, goals = self.split(fires, lambda f: operator._action(user_id, f, detected_at))
        actions = operator.enrich_now(ctx, actions)
        event_time = self.floor(operator, user_id, self.host.event_time)
        yield from self.run(ctx, user_id, actions, goals, event_time)
        if processing:
            yield from self.on_processing_timer(ctx, user_id)

    @staticmethod
    def floor(operator, user_id: str, event_time: float) -> float:
        """What the step may decide up to: no further than an action of `user_id` (the current
        key) still held for its profile (its fate comes before any later one's;
        udfs/campaign/fate.py)."""
        held = operator.held_floor(user_id)
        return held if held is not None and held < event_time else event_time

    @staticmethod
    def split(fires, build) -> tuple[list, list]:
        """A timer's fires as actions (`build(fire)`) and its goal results."""
        actions, goals = [], []
        for item in fires:
            if type(item) is Fire:
                actions.append(build(item))
            else:
                goals.append(item)
        return actions, goals

    def run(
        self, ctx, user: str, actions, goals, now_event_time: float, forget_until=None
    ) -> list[Row]:
        state = self.state.value()
        if state is None:
            if not actions and not goals:
                return []
            state = CampaignState()
        step, out = self.step, []
        for action in actions:
            out += step.submit(state, action)
        for goal in goals:
            out += step.on_goal(state, user, goal)
        out += step.release(state, user, now_event_time, forget_until)
        self._schedule(ctx, state)
        if step.is_empty(state):
            self.state.clear()
        else:
            self.state.update(state)
        return [self._row(user, kind, record) for kind, record in out]

    def on_processing_timer(self, ctx, user: str) -> list[Row]:
        """Idle forcing for the campaign: a decision waiting on event time that the input,
        idle for idle_fire_after, will not move is taken at its wakeup."""
        host = self.host
        state = self.state.value()
        if state is None or not host.idle_fire_after_ms:
            return []
        # Only decisions and deferred actions are forced. Counted actions are forgotten as the
        # watermark passes their window, never at a forced time: the user's later events are
        # not late (the engine did not move their event time), and their actions must still be
        # capped by what was counted (DESIGN.md "Fate of a detection", step 3).
        wakeup = self.step.fate.wakeup(state.fate)
        watermark = ctx.timer_service().current_watermark()
        if wakeup is None or wakeup <= watermark:
            return []
        now = host.clock()
        due = idle_force_due(
            wakeup, host.watermark_moved_at, host.input_seen_at, host.idle_fire_after_ms
        )
        if now < due:
            ctx.timer_service().register_processing_time_timer(round_up(due))
            return []
        return self.run(ctx, user, (), (), event_time(watermark, wakeup), forget_until=watermark)

    def _schedule(self, ctx, state: CampaignState) -> None:
        wakeup = self.step.wakeup(state)
        if wakeup is None:
            return
        timers = ctx.timer_service()
        # A wakeup the watermark has passed means the step waits for an action held for its
        # profile (CampaignOperator.floor): register it for the next watermark. At or below the
        # current one, Flink fires it again within the same advance, and again, forever: the
        # task thread never gets to the processing-time timer that releases the held action.
        timers.register_event_time_timer(max(wakeup, timers.current_watermark() + 1))
        idle = self.host.idle_fire_after_ms
        if idle and self.step.fate.wakeup(state.fate) is not None:
            timers.register_processing_time_timer(round_up(self.host.clock() + idle))

    def _row(self, user: str, kind: str, record) -> Row:
        if kind == OUTCOME:
            self._count("outcome", record.rule_id, record.arm, record.converted)
        else:
            fate = record.suppressed or ("sent" if record.deliver_at is None else "deferred")
            self._count("fate", fate)
        return Row(_KINDS[kind], user, record.to_json_bytes().decode())
