"""Quiet hours: the window in local wall time, its end across DST changes, and the user's zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.campaign.conftest import local_ms
from tests.unit.campaign.oracle import _minute_walk_end, _window_minutes
from udfs.campaign.quiet_hours import in_quiet_hours, window_end, zone_for

NY, BERLIN, UTC = ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin"), ZoneInfo("UTC")
HOUR = 3_600_000


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("clock", "inside"),
    [("08:59", False), ("09:00", True), ("12:30", True), ("16:59", True), ("17:00", False)],
)
def test_plain_window_start_inclusive_end_exclusive(clock, inside):
    assert in_quiet_hours(utc_ms(f"2025-06-01T{clock}:00"), UTC, "09:00", "17:00") is inside


@pytest.mark.parametrize(
    ("clock", "inside"),
    [
        ("20:59:59.999", False),
        ("21:00", True),
        ("23:59", True),
        ("00:00", True),
        ("07:59", True),
        ("08:00", False),
        ("12:00", False),
    ],
)
def test_window_wrapping_midnight(clock, inside):
    assert in_quiet_hours(utc_ms(f"2025-06-01T{clock}"), UTC, "21:00", "08:00") is inside


def test_local_time_of_the_zone():
    ts = utc_ms("2025-06-01T20:00")  # 22:00 in Berlin (CEST), 16:00 in New York (EDT)
    assert in_quiet_hours(ts, BERLIN, "21:00", "08:00")
    assert not in_quiet_hours(ts, NY, "21:00", "08:00")


def test_window_end_plain_and_wrapping():
    assert window_end(utc_ms("2025-06-01T22:15:30.250"), UTC, "21:00", "08:00") == utc_ms(
        "2025-06-02T08:00"
    )
    assert window_end(utc_ms("2025-06-02T03:00"), UTC, "21:00", "08:00") == utc_ms(
        "2025-06-02T08:00"
    )
    assert window_end(utc_ms("2025-06-02T07:59:59.999"), UTC, "21:00", "08:00") == utc_ms(
        "2025-06-02T08:00"
    )
    assert window_end(utc_ms("2025-06-01T10:00"), UTC, "09:00", "17:00") == utc_ms(
        "2025-06-01T17:00"
    )


def test_window_end_of_an_instant_outside_is_the_instant():
    ts = utc_ms("2025-06-01T12:00:00.123")
    assert window_end(ts, UTC, "21:00", "08:00") == ts


def test_window_end_in_local_time():
    ts = local_ms("2025-06-01T23:00", "Europe/Berlin")
    assert window_end(ts, BERLIN, "21:00", "08:00") == local_ms("2025-06-02T08:00", "Europe/Berlin")


def test_spring_forward_over_end_ends_at_the_jump_new_york():
    # 2025-03-09: 02:00 EST -> 03:00 EDT; the local 02:30 does not exist.
    ts = local_ms("2025-03-09T01:00", "America/New_York")
    end = window_end(ts, NY, "22:00", "02:30")
    assert end == utc_ms("2025-03-09T07:00")  # 03:00 EDT, the transition instant
    assert not in_quiet_hours(end, NY, "22:00", "02:30")
    assert in_quiet_hours(end - 1, NY, "22:00", "02:30")


def test_spring_forward_inside_window_keeps_wall_clock_end_berlin():
    # 2025-03-30: 02:00 CET -> 03:00 CEST; a 21:00-08:00 window is an hour shorter that night.
    ts = local_ms("2025-03-29T22:00", "Europe/Berlin")
    assert window_end(ts, BERLIN, "21:00", "08:00") == local_ms("2025-03-30T08:00", "Europe/Berlin")
    assert window_end(ts, BERLIN, "21:00", "08:00") - ts == 9 * HOUR


def test_spring_forward_over_start_and_end_berlin():
    # Window 02:15-02:45 never exists on 2025-03-30; 01:59 is outside, 03:00 is outside.
    assert not in_quiet_hours(
        local_ms("2025-03-30T01:59", "Europe/Berlin"), BERLIN, "02:15", "02:45"
    )
    assert not in_quiet_hours(
        local_ms("2025-03-30T03:00", "Europe/Berlin"), BERLIN, "02:15", "02:45"
    )


def test_fall_back_end_occurring_twice_new_york():
    # 2025-11-02: 02:00 EDT -> 01:00 EST; the local 01:30 occurs twice.
    ts = local_ms("2025-11-02T00:30", "America/New_York")
    first = window_end(ts, NY, "23:00", "01:30")
    assert first == utc_ms("2025-11-02T05:30")  # 01:30 EDT, the first one
    # The clock falls back into the window: 01:00-01:29 EST are quiet again, until 01:30 EST.
    again = utc_ms("2025-11-02T06:00")  # 01:00 EST
    assert not in_quiet_hours(utc_ms("2025-11-02T05:59:59.999"), NY, "23:00", "01:30")
    assert in_quiet_hours(again, NY, "23:00", "01:30")
    assert window_end(again, NY, "23:00", "01:30") == utc_ms("2025-11-02T06:30")


def test_fall_back_out_of_the_window_ends_at_the_jump_berlin():
    # 2025-10-26: 03:00 CEST -> 02:00 CET. Window 02:30-03:30: at 02:45 CEST the clock reaches
    # 03:00 CEST and falls back to 02:00 CET, outside the window.
    ts = local_ms("2025-10-26T02:45", "Europe/Berlin", fold=0)
    end = window_end(ts, BERLIN, "02:30", "03:30")
    assert end == utc_ms("2025-10-26T01:00")
    # Then 02:30 CET opens it again until 03:30 CET.
    second = utc_ms("2025-10-26T01:30")
    assert in_quiet_hours(second, BERLIN, "02:30", "03:30")
    assert window_end(second, BERLIN, "02:30", "03:30") == utc_ms("2025-10-26T02:30")


def test_fall_back_inside_a_window_lengthens_it_berlin():
    ts = local_ms("2025-10-25T22:00", "Europe/Berlin")
    assert window_end(ts, BERLIN, "21:00", "08:00") - ts == 11 * HOUR


def test_zone_for_profile_field_and_fallbacks():
    assert zone_for({"timezone": "Europe/Berlin"}, "profile.timezone", "UTC") == BERLIN
    assert zone_for({"tz": "Europe/Berlin"}, "tz", "UTC") == BERLIN
    for profile in (
        {},
        {"timezone": None},
        {"timezone": 5},
        {"timezone": ""},
        {"timezone": "Mars/Olympus"},
        {"timezone": "America"},
        {"timezone": "../etc/passwd"},
        {"timezone": "/etc/localtime"},
        {"timezone": ["Europe/Berlin"]},
        None,
    ):
        assert zone_for(profile, "profile.timezone", "America/New_York") == NY
    assert zone_for({"timezone": "Europe/Berlin"}, None, "UTC") == UTC


def test_zone_for_returns_cached_zones():
    assert zone_for({"tz": "Asia/Tokyo"}, "tz", "UTC") is zone_for(
        {"tz": "Asia/Tokyo"}, "tz", "UTC"
    )


ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Santiago",
    "Pacific/Chatham",
    "Europe/London",
    "America/St_Johns",
]
CLOCKS = st.builds(
    lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 59])
)


@settings(max_examples=400, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    start=CLOCKS,
    end=CLOCKS,
    ts=st.integers(utc_ms("2024-01-01T00:00"), utc_ms("2027-01-01T00:00")),
)
def test_window_end_equals_a_minute_by_minute_walk(zone, start, end, ts):
    check_against_walk(zone, start, end, ts)


def check_against_walk(zone, start, end, ts):
    if start == end:
        return
    tz = ZoneInfo(zone)
    minutes = _window_minutes(start, end)
    local = datetime.fromtimestamp(ts // 1000, tz)
    inside = local.hour * 60 + local.minute in minutes
    assert in_quiet_hours(ts, tz, start, end) is inside
    expected = _minute_walk_end(ts, tz, minutes) if inside else ts
    assert window_end(ts, tz, start, end) == expected


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(["America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]),
    start=CLOCKS,
    end=CLOCKS,
    minutes_from_change=st.integers(-26 * 60, 26 * 60),
    change=st.sampled_from(
        [
            utc_ms("2025-03-09T07:00"),
            utc_ms("2025-11-02T06:00"),
            utc_ms("2025-03-30T01:00"),
            utc_ms("2025-10-26T01:00"),
            utc_ms("2025-04-05T15:00"),
            utc_ms("2025-10-04T15:30"),
        ]
    ),
)
def test_window_end_near_dst_changes(zone, start, end, minutes_from_change, change):
    check_against_walk(zone, start, end, change + minutes_from_change * 60_000 + 17)
