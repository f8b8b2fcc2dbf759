"""The campaign step's event-time wakeups in the detect operator (jobs/operators/campaign.py).

Flink fires, within one watermark advance, every event-time timer at or below the new watermark,
including those registered while it fires them. A campaign wakeup the watermark has already
passed (the step waits for an action held for its profile) must therefore go to the next
watermark: registered at or below the current one it fires again at once, forever, and the
processing-time timer that would release the held action never runs (the restored Kafka job of
tests/integration/test_detect_campaign_restart.py hung so when lookups were slower)."""

from __future__ import annotations

from types import SimpleNamespace

from jobs.operators.campaign import CampaignOperator


class Timers:
    def __init__(self, watermark: int):
        self.watermark = watermark
        self.event_time: list[int] = []
        self.processing_time: list[int] = []

    def current_watermark(self) -> int:
        return self.watermark

    def register_event_time_timer(self, at: int) -> None:
        self.event_time.append(at)

    def register_processing_time_timer(self, at: int) -> None:
        self.processing_time.append(at)


def _operator(wakeup: int) -> CampaignOperator:
    operator = CampaignOperator.__new__(CampaignOperator)
    fate = SimpleNamespace(wakeup=lambda state: None)
    operator.step = SimpleNamespace(wakeup=lambda state: wakeup, fate=fate)
    operator.host = SimpleNamespace(idle_fire_after_ms=0)
    return operator


def _scheduled(wakeup: int, watermark: int) -> list[int]:
    timers = Timers(watermark)
    _operator(wakeup)._schedule(SimpleNamespace(timer_service=lambda: timers), state=object())
    return timers.event_time


def test_a_wakeup_ahead_of_the_watermark_is_registered_as_it_is():
    assert _scheduled(wakeup=5_000, watermark=4_000) == [5_000]


def test_a_wakeup_the_watermark_passed_waits_for_the_next_watermark():
    assert _scheduled(wakeup=3_000, watermark=4_000) == [4_001]
    assert _scheduled(wakeup=4_000, watermark=4_000) == [4_001]
