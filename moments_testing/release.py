"""The JVM release operator (udfs/jvm ReleaseOnWatermark, ReleaseOperator) in Python, for the
operator's tests and bench/operator_bench.py: payload rows (jobs/connectors/payload.py) held per
user until the watermark passes them, then every released user's rows as one record, packed as
the Java operator packs them. No idle flush (the tests move the watermark by hand)."""

from __future__ import annotations

import base64
import json

from pyflink.common import Row

from jobs.connectors import payload as p


class JvmRelease:
    def __init__(self) -> None:
        self.watermark: float = float("-inf")
        self.held: dict[str, list] = {}

    def hold(self, row) -> bool:
        """Whether the operator holds `row` (decoded and not late); else it passes at once."""
        if not row[p.DECODED] or row[p.TS] < self.watermark:
            return False
        self.held.setdefault(row[p.USER_ID], []).append(row)
        return True

    def advance(self, watermark: int) -> Row | None:
        """The record emitted before `watermark` goes on: the held rows below it, all users'
        (in the order of their earliest timer, ts + 1, as Flink fires them), or None."""
        self.watermark = max(self.watermark, watermark)
        due = sorted((min(r[p.TS] for r in rows), user) for user, rows in self.held.items())
        released = []
        for earliest, user in due:
            if earliest >= watermark:
                break
            rows = self.held.pop(user)
            keep = [r for r in rows if r[p.TS] >= watermark]
            if keep:
                self.held[user] = keep
            released.append((user, [r for r in rows if r[p.TS] < watermark]))
        return step_record(released, watermark) if released else None


def step_record(released: list[tuple[str, list]], watermark: int) -> Row:
    """One record for these users' rows: the first user's last row carries the others in
    `batch` (ReleaseOnWatermark.takeStep)."""
    first_user, first_rows = released[0]
    *others, carrier = first_rows
    groups = [[first_user, others]] + [[user, rows] for user, rows in released[1:]]
    alone = len(released) == 1 and not others
    batch = (
        None if alone else json.dumps([[user, [_packed(r) for r in rows]] for user, rows in groups])
    )
    fields = list(carrier)
    fields[p.RELEASE], fields[p.BATCH] = watermark, batch
    return Row(*fields)


def _packed(row) -> list:
    properties = row[p.PROPERTIES]
    return [
        row[p.TS],
        row[p.EVENT_ID],
        row[p.EVENT_TYPE],
        row[p.DEVICE],
        None if properties is None else json.loads(properties),
        base64.b64encode(row[p.VALUE]).decode(),
    ]
