"""The records of udfs/jvm ReleaseOnWatermark in the detect operator: one record brings the events
the JVM held for every user whose events one watermark passed; the operator's keyed state and
timers are switched to each user in turn (jobs.flink_compat.key_switch)."""

from __future__ import annotations

from collections.abc import Callable

from pyflink.common import Row

from jobs.connectors import payload as p
from jobs.flink_compat import key_switch
from jobs.operators.decode import released_raw, released_users
from jobs.operators.rows import KIND_LATE, LATE_TAG
from udfs.decode import raw_text
from udfs.host import Host
from udfs.model import EngineEvent


class Releases:
    def __init__(self, runtime_context, host: Host) -> None:
        self.runtime_context = runtime_context
        self.host = host
        self.switch = None  # key_switch's, once a release brings several users

    def outputs(
        self, ctx, row: tuple, event: EngineEvent, outputs_of: Callable
    ) -> tuple[int, list]:
        """A release `row` (a payload: its own `event`, the others in its `batch`, released as
        the watermark moves to its `release`): its number of events, and the late rows and
        `outputs_of(ctx, fires, detected_at)` of each of its users in turn, each made with the
        key switched to that user (the row's own key is back when this returns)."""
        user_id, release = row[p.USER_ID], row[p.RELEASE]
        users = released_users(row[p.BATCH], user_id, event, row[p.VALUE])
        count = sum(len(events) for _, events, _ in users)
        # The watermark before `release`, the same for every user of the row: read once.
        watermark = self.host.watermark_now(ctx)

        def released(ctx, user: str, events: list, raws: list):
            late, fires, detected_at = self.host.on_release(ctx, events, release, watermark)
            for index in late:
                yield LATE_TAG, Row(KIND_LATE, user, raw_text(released_raw(raws[index])))
            yield from outputs_of(ctx, fires, detected_at)

        if len(users) == 1:
            return count, list(released(ctx, user_id, users[0][1], users[0][2]))
        switch = self.switch
        if switch is None:
            switch = self.switch = key_switch(self.runtime_context)
        outputs: list = []
        try:
            for user, events, raws in users:
                outputs += released(switch(ctx, user), user, events, raws)
        finally:
            switch(ctx, user_id)
        return count, outputs
