"""The fate step, one step and one edge at a time (DESIGN.md "Fate of a detection")."""

from __future__ import annotations

import pickle

from tests.unit.campaign.conftest import local_ms, make_action, make_rules, user_in_arm
from udfs.campaign.fate import FateState, FateStep, count_fates

INF = float("inf")
HOUR = 3_600_000
T0 = local_ms("2025-06-02T12:00", "UTC")  # a Monday noon, outside any test window


def run(rules, actions, watermark=INF):
    step, state = FateStep(rules), FateState()
    for action in actions:
        step.submit(state, action)
    decided, due = step.release(state, watermark)
    return [(d.fate, d.action.trigger_ts) for d in decided], due, step, state


def test_no_limits_no_audience_no_experiment_is_passthrough():
    rules = make_rules({"id": "r"})
    step = FateStep(rules)
    assert step.passthrough
    fates, due, _, state = run(rules, [make_action(rules[0], T0 + 1), make_action(rules[0], T0)])
    assert fates == [("sent", T0), ("sent", T0 + 1)]
    assert due == [] and state.is_empty()


def test_not_passthrough_with_any_campaign_feature():
    assert not FateStep(make_rules({"id": "r", "audience": {"profile.vip": True}})).passthrough
    assert not FateStep(
        make_rules({"id": "r"}, limits={"caps": [{"max": 1, "per": "1h"}]})
    ).passthrough
    quiet = {"quiet_hours": {"start": "21:00", "end": "08:00"}}
    assert not FateStep(make_rules({"id": "r"}, limits=quiet)).passthrough
    assert not FateStep(make_rules({"id": "r", "experiment": {"holdout": "10%"}})).passthrough
    assert FateStep(make_rules({"id": "r", "experiment": {"rollout": "50%"}})).passthrough


def test_audience_match_mismatch_and_no_profile():
    rules = make_rules({"id": "r", "audience": {"profile.segment": ["vip", "loyal"]}})
    rule = rules[0]
    actions = [
        make_action(rule, T0, profile={"segment": "vip"}),
        make_action(rule, T0 + 1, profile={"segment": "new"}),
        make_action(rule, T0 + 2, profile={}),
        make_action(rule, T0 + 3, enrichment="missing"),
        make_action(rule, T0 + 4, enrichment="unavailable"),
        make_action(rule, T0 + 5, enrichment="skipped"),
        make_action(rule, T0 + 6, profile={"segment": None}),
    ]
    fates, *_ = run(rules, actions)
    assert [f for f, _ in fates] == [
        "sent",
        "audience",
        "audience",
        "no_profile",
        "no_profile",
        "no_profile",
        "audience",
    ]
    assert [a.suppressed for a in actions] == [
        None,
        "audience",
        "audience",
        "no_profile",
        "no_profile",
        "no_profile",
        "audience",
    ]


def test_rule_without_audience_never_looks_at_the_profile():
    rules = make_rules(
        {"id": "with", "audience": {"profile.vip": True}},
        {"id": "without"},
    )
    fates, *_ = run(rules, [make_action(rules[1], T0, enrichment="unavailable")])
    assert fates == [("sent", T0)]


def test_audience_missing_field_matches_exists_false_and_ne():
    rules = make_rules(
        {"id": "absent", "audience": {"profile.opt_out": {"exists": False}}},
        {"id": "not_churned", "audience": {"profile.status": {"ne": "churned"}}},
        {"id": "rich", "audience": {"profile.ltv": {"gte": 100}}},
    )
    actions = [make_action(rule, T0, profile={}) for rule in rules]
    actions.append(make_action(rules[2], T0 + 1, profile={"ltv": "1000"}))  # a string: no compare
    actions.append(make_action(rules[2], T0 + 2, profile={"ltv": 100}))
    fates, *_ = run(rules, actions)
    assert sorted((a.rule_id, a.trigger_ts, a.suppressed) for a in actions) == [
        ("absent", T0, None),
        ("not_churned", T0, None),
        ("rich", T0, "audience"),
        ("rich", T0 + 1, "audience"),
        ("rich", T0 + 2, None),
    ]


def quiet(mode, **more):
    return {"quiet_hours": {"start": "21:00", "end": "08:00", "mode": mode, **more}}


def test_quiet_hours_drop():
    rules = make_rules({"id": "r"}, limits=quiet("drop"))
    night = local_ms("2025-06-02T22:00", "UTC")
    fates, due, *_ = run(rules, [make_action(rules[0], night), make_action(rules[0], T0)])
    assert fates == [("sent", T0), ("quiet_hours", night)]
    assert due == []


def test_quiet_hours_defer_released_exactly_at_deliver_at():
    rules = make_rules({"id": "r"}, limits=quiet("defer"))
    night = local_ms("2025-06-02T22:00", "UTC")
    morning = local_ms("2025-06-03T08:00", "UTC")
    step, state = FateStep(rules), FateState()
    action = make_action(rules[0], night)
    step.submit(state, action)
    assert step.wakeup(state) == night + 1
    decided, due = step.release(state, night + 1)
    assert [(d.fate, d.action.deliver_at) for d in decided] == [("deferred", morning)]
    assert due == [] and action.suppressed is None
    assert step.wakeup(state) == morning
    assert step.release(state, morning - 1) == ([], [])
    assert step.release(state, morning) == ([], [action])
    assert step.release(state, INF) == ([], [])
    assert state.is_empty() and step.wakeup(state) is None


def test_deferred_decided_after_its_deliver_at_is_due_in_the_same_call():
    rules = make_rules({"id": "r"}, limits=quiet("defer"))
    night = local_ms("2025-06-02T22:00", "UTC")
    late = make_action(rules[0], night)
    other = make_action(rules[0], local_ms("2025-06-02T23:00", "UTC"))
    fates, due, *_ = run(rules, [other, late], watermark=local_ms("2025-06-03T09:00", "UTC"))
    assert [f for f, _ in fates] == ["deferred", "deferred"]
    assert due == [late, other]  # (deliver_at, trigger_ts, action_id) order


def test_quiet_hours_in_the_profiles_zone_else_default():
    rules = make_rules(
        {"id": "r"},
        limits=quiet("defer", timezone="profile.tz", default_timezone="America/New_York"),
    )
    ts = local_ms("2025-06-02T22:00", "Europe/Berlin")  # 16:00 in New York
    actions = [
        make_action(rules[0], ts, user="berlin", profile={"tz": "Europe/Berlin"}),
        make_action(rules[0], ts, user="bad", profile={"tz": "Not/AZone"}),
        make_action(rules[0], ts, user="none", enrichment="missing"),
    ]
    step = FateStep(rules)
    fates = {}
    for action in actions:
        state = FateState()
        step.submit(state, action)
        (decided,), _ = step.release(state, INF)
        fates[action.user_id] = (decided.fate, decided.action.deliver_at)
    assert fates == {
        "berlin": ("deferred", local_ms("2025-06-03T08:00", "Europe/Berlin")),
        "bad": ("sent", None),
        "none": ("sent", None),
    }


def caps(*caps_):
    return {"caps": list(caps_)}


def test_cap_window_excludes_t_minus_per_and_includes_t():
    rules = make_rules({"id": "a"}, {"id": "b"}, limits=caps({"max": 1, "per": "1h"}))
    a, b = rules
    fates, *_ = run(
        rules,
        [
            make_action(a, T0),
            make_action(a, T0 + HOUR),  # T0 is at t - per: excluded, so sent
            make_action(b, T0 + 2 * HOUR - 1),  # T0 + HOUR in (t - per, t]: capped
            make_action(b, T0 + 2 * HOUR),  # T0 + HOUR at t - per again: sent
        ],
    )
    assert fates == [
        ("sent", T0),
        ("sent", T0 + HOUR),
        ("cap", T0 + 2 * HOUR - 1),
        ("sent", T0 + 2 * HOUR),
    ]


def test_same_trigger_ts_ties_go_by_action_id():
    rules = make_rules(*({"id": f"r{i}"} for i in range(6)), limits=caps({"max": 1, "per": "1h"}))
    actions = [make_action(rule, T0) for rule in rules]
    first = min(actions, key=lambda a: a.action_id)
    fates, *_ = run(rules, list(reversed(actions)))
    assert [f for f, _ in fates] == ["sent"] + ["cap"] * 5
    assert first.suppressed is None
    assert sorted(a.action_id for a in actions if a.suppressed == "cap") == sorted(
        a.action_id for a in actions if a is not first
    )


def test_action_at_the_watermark_waits_for_a_tie():
    rules = make_rules({"id": "a"}, {"id": "b"}, limits=caps({"max": 1, "per": "1h"}))
    step, state = FateStep(rules), FateState()
    one, two = make_action(rules[0], T0), make_action(rules[1], T0)
    late_id, early_id = sorted([one, two], key=lambda a: a.action_id)[::-1]
    step.submit(state, late_id)
    assert step.release(state, T0) == ([], [])
    step.submit(state, early_id)
    decided, _ = step.release(state, T0 + 1)
    assert [(d.fate, d.action) for d in decided] == [("sent", early_id), ("cap", late_id)]


def test_cap_with_destinations_applies_to_and_counts_only_those():
    rules = make_rules(
        {"id": "push", "action": {"name": "p", "destinations": ["kafka", "braze"]}},
        {"id": "log", "action": {"name": "l", "destinations": ["kafka"]}},
        limits=caps({"max": 1, "per": "1h", "destinations": ["braze"]}),
    )
    push, log = rules
    fates, *_ = run(
        rules,
        [
            make_action(log, T0),  # does not count for the braze cap
            make_action(push, T0 + 1),
            make_action(log, T0 + 2),  # not capped: names no braze
            make_action(push, T0 + 3),  # capped by the push at T0 + 1
        ],
    )
    assert fates == [("sent", T0), ("sent", T0 + 1), ("sent", T0 + 2), ("cap", T0 + 3)]


def test_any_applying_cap_caps():
    rules = make_rules(
        {"id": "push", "action": {"name": "p", "destinations": ["braze"]}},
        {"id": "mail", "action": {"name": "m", "destinations": ["iterable"]}},
        limits=caps({"max": 2, "per": "1d"}, {"max": 1, "per": "1h", "destinations": ["braze"]}),
    )
    push, mail = rules
    fates, *_ = run(
        rules,
        [
            make_action(push, T0),
            make_action(push, T0 + 1),
            make_action(mail, T0 + 2),
            make_action(mail, T0 + HOUR),
        ],
    )
    assert [f for f, _ in fates] == ["sent", "cap", "sent", "cap"]


def test_control_is_suppressed_and_counted_for_caps():
    rules = make_rules(
        {"id": "exp", "experiment": {"holdout": "50%"}},
        {"id": "plain"},
        limits=caps({"max": 1, "per": "1h"}),
    )
    exp, plain = rules
    user = user_in_arm(exp, "control")
    fates, *_ = run(rules, [make_action(exp, T0, user=user), make_action(plain, T0 + 1, user=user)])
    assert fates == [("control", T0), ("cap", T0 + 1)]


def test_treated_user_is_sent():
    rules = make_rules({"id": "exp", "experiment": {"holdout": "50%"}})
    user = user_in_arm(rules[0], "treatment")
    fates, *_ = run(rules, [make_action(rules[0], T0, user=user)])
    assert fates == [("sent", T0)]


def test_order_of_steps():
    # audience before quiet hours before caps before control before defer.
    rules = make_rules(
        {"id": "aud", "audience": {"profile.vip": True}, "experiment": {"holdout": "50%"}},
        limits={"caps": [{"max": 1, "per": "1d"}], "quiet_hours": quiet("drop")["quiet_hours"]},
    )
    rule = rules[0]
    user = user_in_arm(rule, "control")
    night = local_ms("2025-06-02T22:00", "UTC")
    fates, *_ = run(
        rules,
        [
            make_action(rule, night, user=user, profile={"vip": False}),  # audience, not counted
            make_action(rule, night + 1, user=user, profile={"vip": True}),  # quiet, not counted
            make_action(rule, T0, user=user, profile={"vip": True}),  # control, counted
            make_action(rule, T0 + 1, user=user, profile={"vip": True}),  # cap
        ],
    )
    assert fates == [
        ("control", T0),
        ("cap", T0 + 1),
        ("audience", night),
        ("quiet_hours", night + 1),
    ]


def test_quiet_hours_defer_counts_for_caps_and_control_is_not_deferred():
    rules = make_rules(
        {"id": "exp", "experiment": {"holdout": "50%"}},
        limits={"caps": [{"max": 2, "per": "1d"}], "quiet_hours": quiet("defer")["quiet_hours"]},
    )
    rule = rules[0]
    night = local_ms("2025-06-02T22:00", "UTC")
    control, treated = user_in_arm(rule, "control"), user_in_arm(rule, "treatment")
    for user, expected in [
        (control, ["control", "control", "cap"]),
        (treated, ["deferred", "deferred", "cap"]),
    ]:
        fates, due, *_ = run(rules, [make_action(rule, night + i, user=user) for i in range(3)])
        assert [f for f, _ in fates] == expected
        assert len(due) == expected.count("deferred")


def test_counted_actions_are_forgotten_after_the_longest_per():
    rules = make_rules({"id": "r"}, limits=caps({"max": 5, "per": "1h"}, {"max": 9, "per": "2h"}))
    step, state = FateStep(rules), FateState()
    step.submit(state, make_action(rules[0], T0))
    step.release(state, T0 + 1)
    assert state.counted and not state.is_empty()
    assert step.forget_at(state) == T0 + 2 * HOUR
    step.release(state, T0 + 2 * HOUR - 1)
    assert state.counted
    step.release(state, T0 + 2 * HOUR)
    assert state.is_empty() and step.forget_at(state) is None


def test_state_pickles_mid_flight():
    rules = make_rules({"id": "r"}, limits={**caps({"max": 2, "per": "1d"}), **quiet("defer")})
    step, state = FateStep(rules), FateState()
    night = local_ms("2025-06-02T22:00", "UTC")
    for ts in (night, night + 1, night + 2, night + 3):
        step.submit(state, make_action(rules[0], ts))
    step.release(state, night + 2)
    copy = pickle.loads(pickle.dumps(state))
    assert copy.__getstate__() == state.__getstate__()
    decided, due = step.release(copy, INF)
    assert [d.fate for d in decided] == ["cap", "cap"]
    assert [a.trigger_ts for a in due] == [night, night + 1]


def test_count_fates_adds_up():
    rules = make_rules({"id": "r"}, limits=caps({"max": 1, "per": "1h"}))
    step, state = FateStep(rules), FateState()
    for i in range(4):
        step.submit(state, make_action(rules[0], T0 + i))
    decided, _ = step.release(state, INF)
    assert count_fates(decided) == {"sent": 1, "cap": 3}
