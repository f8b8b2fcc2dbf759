"""The fate step against the naive oracle: random limits, rules, profiles and actions, submitted in
random order and released at random increasing watermarks, must decide as the oracle does."""

from __future__ import annotations

import pickle
from bisect import bisect_left, bisect_right

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.campaign.conftest import local_ms, make_action, make_rules
from tests.unit.campaign.oracle import oracle_fates
from udfs.campaign.fate import FateState, FateStep, count_fates

INF = float("inf")
SUPPRESSED = {"audience", "no_profile", "quiet_hours", "cap", "control"}
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu"]
BASES = [
    local_ms("2025-03-08T12:00", "UTC"),  # New York springs forward the next night
    local_ms("2025-03-29T12:00", "UTC"),  # Berlin
    local_ms("2025-10-25T12:00", "UTC"),  # Berlin falls back
    local_ms("2025-11-01T12:00", "UTC"),  # New York
    local_ms("2025-06-01T12:00", "UTC"),
]
# Minutes after the base some `per` apart, so cap windows meet at their boundaries.
NEAR = [0, 1, 44, 45, 46, 60, 61, 90, 105, 120, 360, 361, 1440, 1441]
DESTINATIONS = st.lists(
    st.sampled_from(["kafka", "braze", "iterable"]), min_size=1, max_size=3, unique=True
)
CLOCK = st.builds(
    lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 59])
)
AUDIENCES = [
    {"profile.segment": ["vip", "loyal"]},
    {"profile.consent": True},
    {"profile.ltv": {"gte": 100}},
    {"profile.segment": {"ne": "churned"}, "profile.opt_out": {"exists": False}},
]


@st.composite
def limits(draw):
    document = {}
    if draw(st.booleans()):
        caps = []
        for _ in range(draw(st.integers(1, 3))):
            cap = {
                "max": draw(st.integers(1, 3)),
                "per": draw(st.sampled_from(["1m", "45m", "1h", "6h", "1d"])),
            }
            if draw(st.booleans()):
                cap["destinations"] = draw(DESTINATIONS)
            caps.append(cap)
        document["caps"] = caps
    if draw(st.booleans()):
        start, end = draw(CLOCK), draw(CLOCK)
        if start != end:
            document["quiet_hours"] = {
                "start": start,
                "end": end,
                "timezone": draw(st.sampled_from([None, "profile.tz"])),
                "default_timezone": draw(st.sampled_from(ZONES)),
                "mode": draw(st.sampled_from(["drop", "defer"])),
            }
    return document or None


@st.composite
def rule(draw, index):
    document = {
        "id": f"r{index}",
        "action": {"name": f"a{index}", "destinations": draw(DESTINATIONS)},
    }
    if draw(st.booleans()):
        document["audience"] = draw(st.sampled_from(AUDIENCES))
    if draw(st.booleans()):
        experiment = {"holdout": draw(st.sampled_from(["0%", "30%", "50%", "100%"]))}
        if experiment["holdout"] != "100%" and draw(st.booleans()):
            experiment["variants"] = [
                {
                    "name": "a",
                    "weight": 1,
                    "action": {"name": "va", "destinations": draw(DESTINATIONS)},
                },
                {
                    "name": "b",
                    "weight": 2,
                    "action": {"name": "vb", "destinations": draw(DESTINATIONS)},
                },
            ]
        document["experiment"] = experiment
    return document


PROFILES = st.fixed_dictionaries(
    {},
    optional={
        "tz": st.sampled_from([*ZONES, "Mars/Olympus", "", 7, None, "America"]),
        "segment": st.sampled_from(["vip", "loyal", "churned", None]),
        "consent": st.sampled_from([True, False, 1, None]),
        "ltv": st.sampled_from([50, 100, 150.5, "200"]),
        "opt_out": st.just(True),
    },
)


@st.composite
def scenarios(draw):
    rules = make_rules(
        *(draw(rule(i)) for i in range(draw(st.integers(1, 4)))), limits=draw(limits())
    )
    base = draw(st.sampled_from(BASES))
    size = draw(st.integers(1, 25))
    keys = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(rules) - 1),
                st.sampled_from(["u0", "u0", "u1", "u2"]),
                st.one_of(st.sampled_from(NEAR), st.integers(0, 90), st.integers(0, 48 * 60)),
                st.sampled_from([0, 0, 1, 999]),
            ),
            min_size=size,
            max_size=size,
            unique_by=lambda k: (k[0], k[1], k[2] * 60_000 + k[3]),
        )
    )
    actions = []
    for rule_index, user, minute, jitter in keys:
        enrichment = draw(st.sampled_from(["ok", "ok", "ok", "missing", "unavailable", "skipped"]))
        # A host leaves the profile empty unless found; a stray one must not change the fate.
        profile = draw(PROFILES) if enrichment == "ok" or draw(st.booleans()) else {}
        ts = base + minute * 60_000 + jitter
        actions.append(make_action(rules[rule_index], ts, user, profile, enrichment))
    watermarks = sorted(
        set(draw(st.lists(st.integers(0, 50 * 60).map(lambda m: base + m * 60_000), max_size=20)))
    )
    for action in list(actions):
        # Ties exactly at a watermark, and watermarks one past a trigger.
        if draw(st.integers(0, 4)) == 0:
            watermarks.append(action.trigger_ts + draw(st.sampled_from([0, 1])))
    for fate, deliver_at in oracle_fates(rules, actions).values():
        if fate == "deferred" and draw(st.booleans()):
            watermarks.append(deliver_at + draw(st.sampled_from([-1, 0, 0, 1])))
    watermarks = sorted(set(watermarks)) + [INF]
    # An action is submitted before the first release whose watermark passes its trigger_ts.
    slots = {}
    for action in actions:
        last = bisect_right(watermarks, action.trigger_ts)
        slots.setdefault(draw(st.integers(0, last)), []).append(action)
    for slot in slots.values():
        slot[:] = draw(st.permutations(slot))
    pickle_at = draw(st.sets(st.integers(0, len(watermarks))))
    return rules, actions, watermarks, slots, pickle_at


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_fate_step_equals_oracle(scenario):
    rules, actions, watermarks, slots, pickle_at = scenario
    expected = oracle_fates(rules, actions)
    step = FateStep(rules)
    states: dict[str, FateState] = {}
    decided_log, due_log = [], []
    for call, watermark in enumerate(watermarks):
        for action in slots.get(call, []):
            step.submit(states.setdefault(action.user_id, FateState()), action)
        if call in pickle_at:
            states = pickle.loads(pickle.dumps(states))
        for user, state in sorted(states.items()):
            wakeup = step.wakeup(state)
            decided, due = step.release(state, watermark)
            if wakeup is None or wakeup > watermark:
                assert decided == [] and due == []
            decided_log.append(
                (call, user, [(d.action.action_id, d.fate, d.action.deliver_at) for d in decided])
            )
            due_log.append((call, user, [(a.action_id, a.deliver_at) for a in due]))
            for fate, action in decided:
                assert action.suppressed == (fate if fate in SUPPRESSED else None)
                assert (action.deliver_at is not None) == (fate == "deferred")

    def oracle_decided(call, user):
        mine = [
            a
            for a in actions
            if a.user_id == user and bisect_right(watermarks, a.trigger_ts) == call
        ]
        mine.sort(key=lambda a: (a.trigger_ts, a.action_id))
        return [(a.action_id, *expected[a.action_id]) for a in mine]

    def oracle_due(call, user):
        mine = [
            (expected[a.action_id][1], a.trigger_ts, a.action_id)
            for a in actions
            if a.user_id == user
            and expected[a.action_id][0] == "deferred"
            and bisect_left(watermarks, expected[a.action_id][1]) == call
        ]
        return [(action_id, deliver_at) for deliver_at, _, action_id in sorted(mine)]

    assert decided_log == [(c, u, oracle_decided(c, u)) for c, u, _ in decided_log]
    assert due_log == [(c, u, oracle_due(c, u)) for c, u, _ in due_log]
    counts = count_fates((fate, None) for _, _, entries in decided_log for _, fate, _ in entries)
    assert sum(counts.values()) == len(actions)
    assert counts["sent"] + counts["deferred"] + sum(counts[s] for s in SUPPRESSED) == len(actions)
    assert sum(len(entries) for _, _, entries in due_log) == counts["deferred"]
    assert all(state.is_empty() for state in states.values())


def test_passthrough_rules_send_everything():
    rules = make_rules({"id": "r0"}, {"id": "r1", "experiment": {"rollout": "50%"}})
    step = FateStep(rules)
    assert step.passthrough
    state = FateState()
    base = BASES[0]
    for i in range(5):
        step.submit(state, make_action(rules[i % 2], base + 5 - i))
    decided, due = step.release(state, INF)
    assert [d.fate for d in decided] == ["sent"] * 5
    assert [d.action.trigger_ts for d in decided] == sorted(d.action.trigger_ts for d in decided)
    assert due == [] and state.is_empty()
