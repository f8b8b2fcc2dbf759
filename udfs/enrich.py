"""The pure half of enrichment: an action and its CRM lookup result in, the enriched action out.

The lookup (I/O) lives in `udfs.crm`; keeping this merge pure lets the Flink job, the backtest and
the tests share it.
"""

from __future__ import annotations

from collections.abc import Collection

from schemas.action import Action
from udfs.crm.base import LookupResult


def enrich(
    action: Action, result: LookupResult | None, fields: Collection[str] | None = None
) -> Action:
    """A copy of `action` with `profile` and `enrichment` set from `result`.

    result None means no CRM is configured: `enrichment` is `skipped`. The profile is kept only
    when the lookup is `ok`; `fields`, when given, keeps just those profile fields (send vendors no
    more personal data than they need). `action` itself is not changed.
    """
    if result is None:
        return action.model_copy(update={"profile": {}, "enrichment": "skipped"})
    profile = {}
    if result.status == "ok":
        profile = {
            name: value
            for name, value in result.profile.items()
            if fields is None or name in fields
        }
    return action.model_copy(update={"profile": profile, "enrichment": result.status})
