"""When may the host force event time forward? Only when the input is really idle."""

from __future__ import annotations

from udfs.host import idle_force_due

IDLE = 5_000
WAKEUP = 1_000_000  # event time of the pending deadline (ms)


def should_force(now, wakeup=WAKEUP, watermark_moved_at=0, input_seen_at=0, idle=IDLE):
    return now >= idle_force_due(wakeup, watermark_moved_at, input_seen_at, idle)


def test_idle_input_forces_once_past_deadline_by_idle_fire_after():
    assert not should_force(WAKEUP + IDLE - 1)
    assert should_force(WAKEUP + IDLE)


def test_busy_but_lagging_stream_does_not_force():
    # A backlog: the watermark (event time long ago) stands still for a minute while elements
    # keep arriving every few ms: never forced.
    stalled_at = WAKEUP + 600_000
    for now in range(stalled_at, stalled_at + 60_000, 7):
        assert not should_force(now, watermark_moved_at=stalled_at, input_seen_at=now - 10)
    now = stalled_at + 60_000
    assert not should_force(now, watermark_moved_at=now - 60_000, input_seen_at=now - IDLE + 1)


def test_moving_watermark_counts_as_activity():
    # The JVM prefilter drops every record of this subtask, but the watermark moves: not idle.
    now = WAKEUP + 600_000
    assert not should_force(now, watermark_moved_at=now - 100, input_seen_at=now - 60_000)


def test_forces_when_neither_elements_nor_watermark_moved_for_idle_fire_after():
    now = WAKEUP + 600_000
    assert should_force(now, watermark_moved_at=now - IDLE, input_seen_at=now - IDLE)
    assert not should_force(now, watermark_moved_at=now - IDLE, input_seen_at=now - IDLE + 1)
