"""The keyed payload of Kafka mode, named once: the fields moments_decode (udfs/jvm) fills for each
record, in order. The SQL ROW of the prefilter query, the PyFlink row type, the detect operator's
indices and the JVM activity filter's constants all come from (or are tested against) this list.
"""

from __future__ import annotations

# (name, Flink SQL type). The raw record's coordinates come from the table; the rest from the
# decoder's result `d` (set only when `decoded`: the JVM vouched for the record).
PAYLOAD_FIELDS: tuple[tuple[str, str], ...] = (
    ("user_id", "STRING"),  # the key ('' when the record has none)
    ("value", "BYTES"),
    ("topic", "STRING"),
    ("partition", "INT"),
    ("offset", "BIGINT"),
    ("decoded", "BOOLEAN"),
    ("event_id", "STRING"),
    ("event_type", "STRING"),
    ("ts", "BIGINT"),
    ("device", "STRING"),
    ("properties", "STRING"),  # JSON text
    # Set by the JVM's release operator (udfs/jvm ReleaseOnWatermark), NULL from SQL. release:
    # NULL for an ordinary record, else the watermark its user is matched up to; batch: the
    # user's other released events, packed (a JSON array), or NULL.
    ("release", "BIGINT"),
    ("batch", "STRING"),
)
TABLE_COLUMNS = frozenset({"value", "topic", "partition", "offset"})
JVM_COLUMNS = frozenset({"release", "batch"})  # NULL in SQL, set by a JVM operator
INDEX = {name: i for i, (name, _) in enumerate(PAYLOAD_FIELDS)}

USER_ID = INDEX["user_id"]
VALUE = INDEX["value"]
TOPIC = INDEX["topic"]
PARTITION = INDEX["partition"]
OFFSET = INDEX["offset"]
DECODED = INDEX["decoded"]
EVENT_ID = INDEX["event_id"]
EVENT_TYPE = INDEX["event_type"]
TS = INDEX["ts"]
DEVICE = INDEX["device"]
PROPERTIES = INDEX["properties"]
RELEASE = INDEX["release"]
BATCH = INDEX["batch"]


def sql_row(decoded: str = "d") -> str:
    """The payload as a SQL ROW constructor over the events table and the decoder's result."""
    columns = (
        f"`{n}`"
        if n in TABLE_COLUMNS
        else f"CAST(NULL AS {t})"
        if n in JVM_COLUMNS
        else f"{decoded}.{n}"
        for n, t in PAYLOAD_FIELDS
    )
    return f"ROW({', '.join(columns)})"


def row_type():
    """The PyFlink type of a keyed record: Row(key, payload)."""
    from pyflink.common import Types

    types = {
        "STRING": Types.STRING,
        "BYTES": lambda: Types.PRIMITIVE_ARRAY(Types.BYTE()),
        "INT": Types.INT,
        "BIGINT": Types.LONG,
        "BOOLEAN": Types.BOOLEAN,
    }
    payload = Types.ROW([types[sql_type]() for _, sql_type in PAYLOAD_FIELDS])
    return Types.ROW([Types.STRING(), payload])
