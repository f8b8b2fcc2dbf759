"""deploy/produce_events.py without Kafka: records keyed by user, restamped, paced."""

from __future__ import annotations

import json

from jobs import settings


def test_records_are_keyed_by_user_and_keep_the_line(produce_events):
    line = b'{"event_id":"e-1","user_id":"u-7","event_type":"x","ts":1000}\n'
    (record,) = produce_events.records([line])
    assert record.key == b"u-7"
    assert record.value == line.rstrip(b"\n")
    assert record.ts == 1000


def test_shift_to_now_moves_every_ts_by_the_same_offset(produce_events):
    lines = [
        json.dumps({"event_id": f"e-{i}", "user_id": "u-1", "event_type": "x", "ts": ts}).encode()
        for i, ts in enumerate((1_000, 3_500, 2_000))
    ]
    out = list(produce_events.records(lines, shift_to_ms=50_000))
    assert [r.ts for r in out] == [50_000, 52_500, 51_000]
    assert [json.loads(r.value)["ts"] for r in out] == [50_000, 52_500, 51_000]
    assert json.loads(out[0].value)["event_id"] == "e-0"


def test_lines_that_are_not_events_pass_unchanged(produce_events):
    lines = [b"not json", b"[1, 2]", b'{"user_id": "u-1", "ts": "2025-11-22T10:00:00Z"}', b"  "]
    out = list(produce_events.records(lines, shift_to_ms=50_000))
    assert [(r.key, r.value, r.ts) for r in out] == [
        (None, b"not json", None),
        (None, b"[1, 2]", None),
        (b"u-1", b'{"user_id": "u-1", "ts": "2025-11-22T10:00:00Z"}', None),
    ]


def test_pacer_follows_event_time_and_never_waits_for_out_of_order_events(produce_events):
    now = [100.0]
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 3))
        now[0] += seconds

    pacer = produce_events.Pacer(speed=2.0, clock=lambda: now[0], sleep=sleep)
    for ts in (10_000, 12_000, 11_000, 16_000, None):
        pacer.wait_for(ts)
    # 2 s of event time at speed 2 is 1 s; 11_000 is already due; 16_000 is 3 s after the start.
    assert slept == [1.0, 2.0]


def test_defaults_come_from_settings(produce_events, monkeypatch):
    monkeypatch.delenv(settings.ENV_KAFKA_BOOTSTRAP, raising=False)
    args = produce_events.parse_args([])
    assert args.topic == settings.EVENTS_TOPIC
    assert args.bootstrap_servers == settings.LOCAL_KAFKA_BOOTSTRAP
    monkeypatch.setenv(settings.ENV_KAFKA_BOOTSTRAP, "kafka:29092")
    assert produce_events.parse_args([]).bootstrap_servers == "kafka:29092"
