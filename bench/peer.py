"""A peer for bench/run.py: the count and sequence rules as Flink SQL MATCH_RECOGNIZE, no Python.

    python bench/peer.py --bootstrap-servers B --events-topic T --out-topic O --group-id G \
        --parallelism 2 --rest-port 8099 --bound-ms 2000

What a Flink user would write instead of our job, for the part of it that MATCH_RECOGNIZE can
express: `login_trouble` (3 `login_failed` within 2m per user) and `quick_add` (`product_view`
then `add_to_cart` within 10s per user) of examples/rules.yaml, on the same Kafka events topic.
One MiniCluster SQL job (a statement set of two INSERTs, sharing one Kafka source): the JSON
source of bench/ceiling.py (bad records skipped), event time `rt = TO_TIMESTAMP_LTZ(ts, 3)` with
`WATERMARK FOR rt AS rt - <bound>`, then per rule a view of the rule's event types and a
`MATCH_RECOGNIZE (PARTITION BY user_id ORDER BY rt ...)`; each match is written as JSON to the
out topic, keyed by user_id: `{"rule_id", "user_id", "trigger_ts", "event_ids"}`, `trigger_ts`
being the completing event's `ts` as in our actions. Runs until killed. The Kafka SQL source
makes its watermarks per Kafka partition, inside the source, and merges them as a shuffle does
(Flink docs, Kafka SQL connector, "Source Per-Partition Watermarks"), as our job's source does;
a partition with no records holds the watermark back (no idle timeout is set, as in our job).

The SQL (see `statements()`; WITHIN from the rules, the watermark from --bound-ms):

    CREATE TEMPORARY VIEW login_failed_events AS
      SELECT * FROM valid_events WHERE event_type = 'login_failed'
    INSERT INTO peer_matches SELECT 'login_trouble', user_id, trigger_ts, event_ids
    FROM login_failed_events MATCH_RECOGNIZE (
      PARTITION BY user_id ORDER BY rt
      MEASURES LAST(F.ts) AS trigger_ts,
               ARRAY[FIRST(F.event_id), FIRST(F.event_id, 1), FIRST(F.event_id, 2)] AS event_ids
      ONE ROW PER MATCH AFTER MATCH SKIP PAST LAST ROW
      PATTERN (F{3}) WITHIN INTERVAL '2' MINUTE
      DEFINE F AS F.event_type = 'login_failed')

    quick_add: the same over `product_view` and `add_to_cart` events, with
      MEASURES A.ts AS trigger_ts, ARRAY[V.event_id, A.event_id] AS event_ids
      PATTERN (V A) WITHIN INTERVAL '10' SECOND
      DEFINE V AS V.event_type = 'product_view', A AS A.event_type = 'add_to_cart'

Choices a competent Flink user makes, not bent to mimic us: each rule reads a view of the event
types it names, since MATCH_RECOGNIZE concatenation is strict contiguity (`(V A)` over every
event would let any page view between the two break the match, and CEP would buffer every event);
`AFTER MATCH SKIP PAST LAST ROW` (said, not left to a default) so that an event counts in one
match only (`SKIP TO NEXT ROW` would fire on the 3rd, 4th, 5th... failure of a burst); `WITHIN`
for the window (the time between a match's first and last row, and what lets Flink prune
state); ORDER BY the event time only.

How its semantics differ from ours (DESIGN.md "Semantics"):
- count: the same fires. Over the `login_failed` events, `F{3}` within 2m with SKIP PAST LAST
  ROW fires on the event that makes 3 consecutive failures with last - first < 2m (CEP drops a
  partial match once `ts - first >= within`) and then starts afresh: our "counted events are
  consumed" and our strict `<`. Exactly 2m from first to third: neither fires.
- sequence: `(V A)` over the two types needs the add right after a view among those two types;
  ours takes the earliest unconsumed view within 10s, whatever came between. Both fire on the
  same adds when views and adds alternate; they differ when views pile up: views at 0s and 1s,
  adds at 2s and 3s: ours fires twice ([v0, a2] then [v1, a3]), the peer once ([v1, a2]: the
  view at 0s is followed by another view, so its partial match fails). A view then an add
  exactly 10s later: neither fires (CEP's window check is `>=`, as ours).
- ties at one timestamp: ours orders a user's events by (ts, event_id); the peer by ts, then the
  order they reached the operator (CEP sorts buffered rows by timestamp only, stably), which is
  the user's Kafka partition order. An add and a view at the same ms fire for us when the view's
  event_id sorts first, for the peer when the view was produced first. Of a burst of failures
  with ties, both fire at the same times but may put other events in each match.
- lateness: ours is late below max ts - bound (an event exactly `bound` behind the latest of its
  partition is on time) and goes to the late topic; the SQL watermark is max ts - bound and CEP
  takes only rows above it, dropping the rest silently (a metric). So an event exactly `bound`
  behind is matched by us and dropped by the peer: 1 ms of the bound.
- cooldown: MATCH_RECOGNIZE has no clause for it (each match stands alone); a Flink user would
  filter the matches in a further query. Neither rule here has a cooldown, so the peer needs
  none. The silence and absence rules are out of its reach: SQL cannot fire on rows that did
  not come (a partial match's time-out is not exposed in MATCH_RECOGNIZE), hence two rules only.
- input: no dead-letter output, no `ts` guard (a record far in the future moves its partition's
  watermark), `ts` only as epoch ms (an RFC 3339 string is a parse error: the record is skipped).

`peer_rules()` and `compare()` are pure (no Flink) for bench/run.py to import.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ceiling import (  # noqa: E402
    kafka_sink,
    kafka_source,
    sql_string,
    table_env,
    with_clause,
)

# The rules of examples/rules.yaml the peer covers (tests/unit/bench checks them against it).
LOGIN_TROUBLE = {"event_type": "login_failed", "threshold": 3, "within_ms": 120_000}
QUICK_ADD = {"steps": ("product_view", "add_to_cart"), "within_ms": 10_000}
EXAMPLES = 5


def peer_rules() -> set[str]:
    """The rule ids the peer covers."""
    return {"login_trouble", "quick_add"}


def compare(ours: list[dict], peer: list[dict]) -> dict:
    """Our actions against the peer's matches, per rule, keyed by (rule_id, user_id, trigger_ts).

    `ours`: our job's action dicts (only the peer's rules are kept); `peer`: the peer's records.
    Per rule: `ours` and `peer` (distinct keys), `both`, `only_ours`, `only_peer`,
    `other_event_ids` (keys on both sides matched from other events), `other_order` (the same
    events in another order: ties at one timestamp), `duplicates_ours` and `duplicates_peer`
    (records beyond the first of a key: a redelivery, or two fires of a rule at one ms, which share
    our action_id too), `equal` (no key on one side only), and up to 5 `examples` of each
    difference, sorted by (user_id, trigger_ts)."""
    ours_by_rule = _by_key(a for a in ours if a["rule_id"] in peer_rules())
    peer_by_rule = _by_key(peer)
    report = {}
    for rule in sorted(peer_rules() | set(ours_by_rule) | set(peer_by_rule)):
        mine, theirs = ours_by_rule.get(rule, {}), peer_by_rule.get(rule, {})
        only_ours = sorted(mine.keys() - theirs.keys())
        only_peer = sorted(theirs.keys() - mine.keys())
        both = sorted(mine.keys() & theirs.keys())
        other_ids, other_order = [], []
        for key in both:
            a, b = _ids(mine[key][0]), _ids(theirs[key][0])
            if sorted(a) != sorted(b):
                other_ids.append(key)
            elif a != b:
                other_order.append(key)
        report[rule] = {
            "ours": len(mine),
            "peer": len(theirs),
            "both": len(both),
            "only_ours": len(only_ours),
            "only_peer": len(only_peer),
            "other_event_ids": len(other_ids),
            "other_order": len(other_order),
            "duplicates_ours": sum(len(v) - 1 for v in mine.values()),
            "duplicates_peer": sum(len(v) - 1 for v in theirs.values()),
            "equal": not only_ours and not only_peer,
            "examples": {
                "only_ours": [_example(k, mine[k][0]) for k in only_ours[:EXAMPLES]],
                "only_peer": [_example(k, theirs[k][0]) for k in only_peer[:EXAMPLES]],
                "other_event_ids": [
                    _example(k, mine[k][0]) | {"peer_event_ids": _ids(theirs[k][0])}
                    for k in other_ids[:EXAMPLES]
                ],
                "other_order": [
                    _example(k, mine[k][0]) | {"peer_event_ids": _ids(theirs[k][0])}
                    for k in other_order[:EXAMPLES]
                ],
            },
        }
    return report


def _by_key(records) -> dict[str, dict[tuple[str, int], list[dict]]]:
    out: dict[str, dict[tuple[str, int], list[dict]]] = {}
    for record in records:
        key = (record["user_id"], int(record["trigger_ts"]))
        out.setdefault(record["rule_id"], {}).setdefault(key, []).append(record)
    return out


def _ids(record: dict) -> list[str]:
    return list(record.get("event_ids") or [])


def _example(key: tuple[str, int], record: dict) -> dict:
    return {"user_id": key[0], "trigger_ts": key[1], "event_ids": _ids(record)}


# -- the SQL -------------------------------------------------------------------------------------
def interval(ms: int) -> str:
    """A SQL interval literal of `ms` milliseconds, in the largest unit that holds it whole."""
    if ms <= 0:
        raise ValueError(f"interval must be positive, got {ms} ms")
    for unit, size in (("HOUR", 3_600_000), ("MINUTE", 60_000), ("SECOND", 1_000)):
        if ms % size == 0 and ms // size < 100:
            return f"INTERVAL '{ms // size}' {unit}"
    seconds, millis = divmod(ms, 1_000)
    if seconds < 100:
        return f"INTERVAL '{seconds}.{millis:03d}' SECOND"
    if seconds < 1_000:  # Flink takes a leading precision of at most 3 for SECOND
        return f"INTERVAL '{seconds}.{millis:03d}' SECOND(3, 3)"
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    return f"INTERVAL '{days} {hour:02d}:{minute:02d}:{second:02d}.{millis:03d}' DAY TO SECOND(3)"


def statements(args) -> tuple[list[str], list[str]]:
    """(DDL, INSERTs): the source, the sink, the views, one MATCH_RECOGNIZE per rule."""
    source, sink = kafka_source(args), kafka_sink(args)
    login, quick = LOGIN_TROUBLE, QUICK_ADD
    view_type, add_type = quick["steps"]
    first_ids = ", ".join(
        "FIRST(F.event_id)" if k == 0 else f"FIRST(F.event_id, {k})"
        for k in range(login["threshold"])
    )
    # `properties` as STRING: Flink's JSON format keeps a nested object as its JSON text.
    ddl = [
        f"""CREATE TEMPORARY TABLE events (
  event_id STRING, user_id STRING, event_type STRING, ts BIGINT,
  properties STRING, device STRING, session_id STRING,
  rt AS TO_TIMESTAMP_LTZ(ts, 3),
  WATERMARK FOR rt AS rt - {interval(args.bound_ms)}
) WITH (
  {with_clause(source)}
)""",
        f"""CREATE TEMPORARY TABLE peer_matches (
  rule_id STRING, user_id STRING, trigger_ts BIGINT, event_ids ARRAY<STRING>
) WITH (
  {with_clause(sink)}
)""",
        """CREATE TEMPORARY VIEW valid_events AS
SELECT user_id, event_id, event_type, ts, rt FROM events
WHERE event_id IS NOT NULL AND user_id IS NOT NULL AND ts IS NOT NULL""",
        f"""CREATE TEMPORARY VIEW login_failed_events AS
SELECT * FROM valid_events WHERE event_type = {sql_string(login["event_type"])}""",
        f"""CREATE TEMPORARY VIEW view_add_events AS
SELECT * FROM valid_events WHERE event_type IN ({sql_string(view_type)}, {sql_string(add_type)})""",
    ]
    inserts = [
        f"""INSERT INTO peer_matches
SELECT 'login_trouble', user_id, trigger_ts, event_ids
FROM login_failed_events
MATCH_RECOGNIZE (
  PARTITION BY user_id
  ORDER BY rt
  MEASURES
    LAST(F.ts) AS trigger_ts,
    ARRAY[{first_ids}] AS event_ids
  ONE ROW PER MATCH
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (F{{{login["threshold"]}}}) WITHIN {interval(login["within_ms"])}
  DEFINE
    F AS F.event_type = {sql_string(login["event_type"])}
)""",
        f"""INSERT INTO peer_matches
SELECT 'quick_add', user_id, trigger_ts, event_ids
FROM view_add_events
MATCH_RECOGNIZE (
  PARTITION BY user_id
  ORDER BY rt
  MEASURES
    A.ts AS trigger_ts,
    ARRAY[V.event_id, A.event_id] AS event_ids
  ONE ROW PER MATCH
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (V A) WITHIN {interval(quick["within_ms"])}
  DEFINE
    V AS V.event_type = {sql_string(view_type)},
    A AS A.event_type = {sql_string(add_type)}
)""",
    ]
    return ddl, inserts


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--events-topic", required=True)
    parser.add_argument("--out-topic", required=True)
    parser.add_argument("--group-id", default="moments-bench-peer")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--rest-port", type=int, required=True)
    parser.add_argument(
        "--bound-ms", type=int, default=2_000, help="out-of-orderness bound of the watermark"
    )
    parser.add_argument("--print-sql", action="store_true", help="print the SQL and exit")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    ddl, inserts = statements(args)
    if args.print_sql:
        print(";\n\n".join(ddl + inserts) + ";")
        return 0

    t_env = table_env(args.rest_port, args.parallelism)
    for statement in ddl:
        t_env.execute_sql(statement)
    statement_set = t_env.create_statement_set()
    for statement in inserts:
        statement_set.add_insert_sql(statement)
    statement_set.execute().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
