"""The Python operators of the detection job, one module each: decode, detect (the engine host) and
enrich, plus the output rows they emit. The names below are the ones other modules and tests use.
"""

from jobs.operators.decode import DecodeEvents, EventTimeOf
from jobs.operators.detect import DetectMoments
from jobs.operators.enrich import EnrichActions, async_enrich_function, enrich_actions
from jobs.operators.rows import DLQ_TAG, KIND_ACTION, KIND_DLQ, KIND_LATE, LATE_TAG, OUTPUT_ROW

__all__ = [
    "DLQ_TAG",
    "KIND_ACTION",
    "KIND_DLQ",
    "KIND_LATE",
    "LATE_TAG",
    "OUTPUT_ROW",
    "DecodeEvents",
    "DetectMoments",
    "EnrichActions",
    "EventTimeOf",
    "async_enrich_function",
    "enrich_actions",
]
