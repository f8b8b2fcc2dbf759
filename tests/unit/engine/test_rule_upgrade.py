"""A job restored from a savepoint with an edited rules file: per-user state carries over for
rules whose definition is unchanged, and an edited rule starts clean."""

from __future__ import annotations

import pickle

from tests.unit.engine.conftest import make_rules
from udfs.engine import Engine, UserState
from udfs.model import EngineEvent

SILENCE = {
    "id": "sil",
    "pattern": {"type": "silence", "start": {"event_type": "cart"}, "gap": "100ms"},
}
COUNT = {
    "id": "cnt",
    "pattern": {"type": "count", "match": {"event_type": "fail"}, "threshold": 3, "within": "1s"},
}


def event(event_id: str, ts: int, event_type: str) -> EngineEvent:
    return EngineEvent(ts, event_id, event_type, None, {})


def armed_state(engine: Engine) -> UserState:
    """A silence armed at 0 and two of three failures counted (the last, at 20, moves the
    silence's deadline to 120), then pickled and read back as a savepoint would be."""
    state = UserState()
    for e in (event("c1", 0, "cart"), event("f1", 10, "fail"), event("f2", 20, "fail")):
        engine.accept(state, e)
    assert engine.advance(state, 50) == []
    return pickle.loads(pickle.dumps(state))


def fired_rules(engine: Engine, state: UserState, events: list[EngineEvent], until: int):
    for e in events:
        engine.accept(state, e)
    return [(fire.rule_id, fire.trigger_ts) for fire in engine.advance(state, until)]


def test_unchanged_rules_keep_their_state():
    before = Engine(make_rules(SILENCE, COUNT))
    state = armed_state(before)
    after = Engine(make_rules(SILENCE, COUNT))
    # The third failure completes the count begun before the restore; the silence fires.
    assert fired_rules(after, state, [event("f3", 60, "fail")], 200) == [
        ("cnt", 60),
        ("sil", 160),
    ]


def test_an_edited_rule_starts_clean_and_the_others_keep_their_state():
    state = armed_state(Engine(make_rules(SILENCE, COUNT)))
    edited = {**COUNT, "pattern": {**COUNT["pattern"], "within": "2s"}}
    after = Engine(make_rules(SILENCE, edited))
    # The two failures counted under the old definition are not used: one more is not enough.
    assert fired_rules(after, state, [event("f3", 60, "fail")], 200) == [("sil", 160)]
    assert fired_rules(after, state, [event("f4", 300, "fail"), event("f5", 310, "fail")], 400)


def test_a_changed_action_keeps_the_state():
    state = armed_state(Engine(make_rules(SILENCE, COUNT)))
    renamed = {**SILENCE, "action": {"name": "other", "destinations": ["kafka", "braze"]}}
    after = Engine(make_rules(renamed, COUNT))
    assert fired_rules(after, state, [], 200) == [("sil", 120)]


def test_a_removed_rule_fires_nothing_and_its_state_is_dropped():
    state = armed_state(Engine(make_rules(SILENCE, COUNT)))
    after = Engine(make_rules(COUNT))
    assert fired_rules(after, state, [], 200) == []
    assert all(key.startswith("cnt#") for key in state.rules)
