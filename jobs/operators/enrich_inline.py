"""The detection operator with enrichment inside it (`--enrichment-layout inline`).

Each event a rule reads starts its user's CRM lookup on a background thread (udfs/crm/prefetch.py);
an action that fires is enriched in the same operator, or held in keyed state until the profile
is known or the lookup budget ran out (udfs/inline_enrichment.py). No second operator, no pickled
hop between a thread-mode and a process-mode operator, and the profile is at hand where an
action's fate is decided.
"""

from __future__ import annotations

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import TimeDomain
from pyflink.datastream.state import ValueStateDescriptor

from jobs.connectors import payload as p
from jobs.operators.detect import DetectMoments
from jobs.operators.enrich import EnrichmentMetrics
from jobs.operators.rows import KIND_ACTION
from schemas.action import Action


class EnrichingDetectMoments(DetectMoments):
    """DetectMoments whose actions leave as enriched output rows. `block`: wait for a lookup
    instead of holding its action (file mode, where processing-time timers stop with the
    input)."""

    def __init__(self, *args, crm_settings, block: bool = False, **kwargs):
        super().__init__(*args, emit_json=False, **kwargs)
        self.crm_settings = crm_settings
        self.block = block

    def open(self, runtime_context) -> None:
        from udfs.crm.factory import build_prefetcher
        from udfs.inline_enrichment import InlineEnrichment

        super().open(runtime_context)
        held = runtime_context.get_state(ValueStateDescriptor("held", Types.PICKLED_BYTE_ARRAY()))
        metrics = EnrichmentMetrics(runtime_context, group="enrich")
        self.prefetcher = build_prefetcher(self.crm_settings)
        self.prefetch_events = self.crm_settings.prefetch == "events"
        self.enrichment = InlineEnrichment(
            self.prefetcher,
            held,
            budget_ms=self.crm_settings.timeout_ms,
            block=self.block,
            record=metrics.record,
            on_hold=metrics.held.inc,
        )

    def process_element(self, value, ctx):
        value = tuple(value)  # a PyFlink Row's __getitem__ is a Python call per field read
        if self.prefetch_events:
            event_type = _event_type(value)
            if event_type is None or not self.engine.is_activity(event_type):
                self.enrichment.prefetch(value[p.USER_ID] if len(value) > 3 else value[0])
        yield from super().process_element(value, ctx)

    def on_timer(self, timestamp: int, ctx):
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME:
            released = self.enrichment.on_timer(ctx)
            if self.campaign is not None:
                if released:
                    watermark = ctx.timer_service().current_watermark()
                    user_id = ctx.get_current_key()
                    watermark = self.campaign.floor(self, user_id, watermark)
                    yield from self.campaign.run(ctx, user_id, released, (), watermark)
            else:
                for action in released:
                    yield _row(action)
        yield from super().on_timer(timestamp, ctx)

    def _outputs(self, ctx, fires, detected_at: int, processing: bool = False):
        if self.campaign is not None:
            yield from super()._outputs(ctx, fires, detected_at, processing)
            return
        for out in super()._outputs(ctx, fires, detected_at, processing):
            if isinstance(out, Action):
                for action in self.enrichment.on_action(ctx, out):
                    yield _row(action)
            else:
                yield out

    def held_floor(self, user_id: str) -> int | None:
        held = self.enrichment.held_actions(user_id)
        return min(action.trigger_ts for action, _ in held) if held else None

    def enrich_now(self, ctx, actions: list) -> list:
        """The campaign layer's enrichment: each action enriched now or held (in order)."""
        return [out for action in actions for out in self.enrichment.on_action(ctx, action)]

    def close(self) -> None:
        if getattr(self, "prefetcher", None) is not None:
            self.prefetcher.close()
        super().close()


def _event_type(value) -> str | None:
    """The event type of a record reaching the operator when it is known before decoding: a file
    record's EngineEvent, or a Kafka row the JVM vouched for; else None."""
    if len(value) == 3:
        return value[1].event_type
    return value[p.EVENT_TYPE] if value[p.DECODED] else None


def _row(action: Action) -> Row:
    return Row(KIND_ACTION, action.user_id, action.to_json_bytes().decode())
