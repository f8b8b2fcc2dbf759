"""The records every sink understands: an output row is `Row(kind, key, value)` with kind `action`,
`suppressed`, `outcome`, `late`, `dlq` or (live rules) `rules_status` and value the JSON text;
late events and dead letters leave operators on side outputs tagged with that type.
"""

from __future__ import annotations

from pyflink.common.typeinfo import Types
from pyflink.datastream import OutputTag

from udfs.campaign.step import ACTION, OUTCOME, SUPPRESSED

KIND_ACTION, KIND_SUPPRESSED, KIND_OUTCOME = ACTION, SUPPRESSED, OUTCOME
KIND_LATE, KIND_DLQ, KIND_RULES_STATUS = "late", "dlq", "rules_status"
OUTPUT_ROW = Types.ROW_NAMED(
    ["kind", "key", "value"], [Types.STRING(), Types.STRING(), Types.STRING()]
)
DLQ_TAG = OutputTag("dead-letter", OUTPUT_ROW)
LATE_TAG = OutputTag("late-events", OUTPUT_ROW)
