"""The Flink operator's host policy in memory: udfs/host.py's Host as DetectMoments configures it,
over MemoryTimerService and pickled MemoryState, with the watermark and wall clock moved by hand."""

from __future__ import annotations

from udfs.engine import Engine
from udfs.host import Host, HostState, MemoryState, MemoryTimerService, spread_bucket_ends
from udfs.model import EngineEvent


class CountingState(MemoryState):
    """Pickled keyed state that counts reads and writes (each one a JVM call in Flink)."""

    def __init__(self, service: MemoryTimerService):
        super().__init__(service, pickled=True)
        self.reads = self.writes = 0

    def value(self):
        self.reads += 1
        return super().value()

    def update(self, value) -> None:
        self.writes += 1
        super().update(value)


class FlinkHost:
    """One operator instance: events, watermarks and wall-clock ticks in, fires out."""

    def __init__(
        self, rules, idle_fire_after_ms=None, activity_delay="spread", now=0, release=False
    ):
        """`release`: on-time events are held as the JVM release operator holds them (udfs/jvm
        ReleaseOnWatermark): released before the watermark passing them reaches the host, and
        flushed to it as ordinary events when the wall clock moves."""
        self.engine = Engine(rules)
        self.held: dict[str, list[EngineEvent]] | None = {} if release else None
        self.service = MemoryTimerService(now=now)
        self.state = CountingState(self.service)
        self.activity = CountingState(self.service)
        delay = spread_bucket_ends(self.engine) if activity_delay == "spread" else activity_delay
        self.host = Host(
            self.engine,
            self.state,
            self.activity,
            activity_delay=delay,
            idle_fire_after_ms=idle_fire_after_ms,
            event_time_detected_at=True,
            clock=self.service.current_processing_time,
        )
        self.fires: list[tuple] = []  # (rule_id, user, trigger_ts, event_ids, detected_at)

    def event(self, event_id: str, ts: int, event_type: str, user: str = "u1") -> bool:
        """Returns False if late (True while the JVM holds it)."""
        event = EngineEvent(ts, event_id, event_type, None, {})
        held = self.held
        if held is not None and ts >= self.service.watermark:
            held.setdefault(user, []).append(event)
            return True
        self.service.key = user
        return self.host.on_event(self.service, user, event)

    def watermark(self, watermark: int) -> list[tuple]:
        new = self._release(watermark) if self.held else []
        return new + self._run(self.service.advance_watermark(watermark))

    def clock(self, now: int) -> list[tuple]:
        if self.held:
            for user, events in sorted(self.held.items()):
                self.service.key = user
                for event in events:
                    self.host.on_event(self.service, user, event)
            self.held.clear()
        return self._run(self.service.advance_clock(now))

    def _release(self, watermark: int) -> list[tuple]:
        """The JVM's release: per user, in the order of its timers (earliest held ts + 1)."""
        held, new = self.held, []
        due = sorted(
            (min(e.ts for e in events) + 1, user)
            for user, events in held.items()
            if min(e.ts for e in events) < watermark
        )
        for _, user in due:
            events = [e for e in held[user] if e.ts < watermark]
            held[user] = [e for e in held[user] if e.ts >= watermark]
            if not held[user]:
                del held[user]
            self.service.key = user
            late, fires, detected_at = self.host.on_release(self.service, events, watermark)
            assert late == [], "a released event came late"
            new += [(f.rule_id, user, f.trigger_ts, f.event_ids, detected_at) for f in fires]
        self.fires += new
        return new

    def _run(self, timers) -> list[tuple]:
        new = []
        for timestamp in timers:
            fires, detected_at = self.host.on_timer(self.service, timestamp)
            new += [
                (f.rule_id, self.service.key, f.trigger_ts, f.event_ids, detected_at) for f in fires
            ]
        self.fires += new
        return new

    def user_state(self, user: str = "u1") -> HostState | None:
        self.service.key = user
        return self.state.value()

    def timers(self, user: str = "u1") -> list[int]:
        return [t for t, key in self.service.timers() if key == user]
