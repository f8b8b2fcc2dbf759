"""InlineEnrichment: an action is enriched at once when its profile is known, else held in keyed
state (it survives a restart) and emitted by a processing-time timer as soon as the profile is
known or, at the end of the budget, `unavailable`; a user's actions keep their order."""

from __future__ import annotations

from schemas.action import Action, action_id
from udfs.crm import LookupResult
from udfs.host import MemoryState, MemoryTimerService, TimeDomain
from udfs.inline_enrichment import LOOKUP_END_SLACK_MS, RECHECK_AFTER_MS, InlineEnrichment

BUDGET_MS = 200
OK = LookupResult("ok", {"segment": "vip"}, cached=True)


class FakePrefetcher:
    """Profiles the test makes known by hand; records requests and blocking waits."""

    def __init__(self):
        self.known: dict[str, LookupResult] = {}
        self.requested: list[str] = []
        self.waited: list[tuple[str, float]] = []
        self.lookup_left_ms: float | None = None
        self.crm_failing = False

    def ready(self, user_id):
        return self.known.get(user_id)

    def request(self, user_id):
        self.requested.append(user_id)
        return True

    def failing(self):
        return self.crm_failing

    def remaining_ms(self, user_id):
        return self.lookup_left_ms

    def wait(self, user_id, timeout_s):
        self.waited.append((user_id, timeout_s))
        return self.known.get(user_id, LookupResult("unavailable", reason="timeout"))


def an_action(user="u-1", trigger_ts=1000) -> Action:
    return Action(
        action_id=action_id("r", user, trigger_ts),
        rule_id="r",
        action="nudge",
        user_id=user,
        trigger_ts=trigger_ts,
        detected_at=trigger_ts,
        event_ids=["e-1"],
        destinations=["kafka"],
        enrichment="skipped",
    )


def setup(block=False, service=None, state=None):
    service = service or MemoryTimerService(now=10_000)
    service.key = "u-1"
    state = state if state is not None else MemoryState(service, pickled=True)
    fetcher = FakePrefetcher()
    recorded = []
    inline = InlineEnrichment(
        fetcher,
        state,
        budget_ms=BUDGET_MS,
        block=block,
        clock=lambda: service.now,
        record=recorded.append,
    )
    return inline, fetcher, service, state, recorded


def fire_clock(inline, service, now):
    """Moves the wall clock; what each processing-time timer it passes emits."""
    out = []
    for _ in service.advance_clock(now):
        out += inline.on_timer(service)
    return out


def test_a_known_profile_enriches_the_action_at_once():
    inline, fetcher, service, state, recorded = setup()
    fetcher.known["u-1"] = OK
    (enriched,) = inline.on_action(service, an_action())
    assert (enriched.enrichment, enriched.profile) == ("ok", {"segment": "vip"})
    assert service.timers(TimeDomain.PROCESSING_TIME) == [] and state.values == {}
    assert recorded == [OK]


def test_an_action_waits_in_state_and_leaves_once_its_profile_is_known():
    inline, fetcher, service, state, _ = setup()
    assert inline.on_action(service, an_action()) == []
    assert fetcher.requested == ["u-1"]
    at = [10_000 + after for after in RECHECK_AFTER_MS] + [10_000 + BUDGET_MS]
    assert service.timers(TimeDomain.PROCESSING_TIME) == [(t, "u-1") for t in at]
    assert fire_clock(inline, service, at[0]) == []  # not known yet: still held
    fetcher.known["u-1"] = OK
    (enriched,) = fire_clock(inline, service, at[1])
    assert enriched.enrichment == "ok"
    assert state.values == {}
    assert fire_clock(inline, service, at[-1]) == []  # the budget's timer finds nothing


def test_a_lookup_started_earlier_is_checked_again_when_its_own_budget_ends():
    inline, fetcher, service, _, _ = setup()
    fetcher.lookup_left_ms = 70.4  # prefetched 130 ms before the action fired
    inline.on_action(service, an_action())
    end = 10_000 + 70 + LOOKUP_END_SLACK_MS
    assert (end, "u-1") in service.timers(TimeDomain.PROCESSING_TIME)
    fire_clock(inline, service, end - 1)
    fetcher.known["u-1"] = LookupResult("unavailable", reason="statement timeout")
    (enriched,) = fire_clock(inline, service, end)
    assert enriched.enrichment == "unavailable"


def test_a_crm_that_never_answers_gives_unavailable_at_the_end_of_the_budget():
    inline, _, service, _, recorded = setup()
    inline.on_action(service, an_action())
    assert fire_clock(inline, service, 10_000 + BUDGET_MS - 1) == []
    (enriched,) = fire_clock(inline, service, 10_000 + BUDGET_MS)
    assert (enriched.enrichment, enriched.profile) == ("unavailable", {})
    assert recorded[0].reason == "timeout"


def test_while_the_crm_is_failing_an_action_is_not_held():
    inline, fetcher, service, state, _ = setup()
    fetcher.crm_failing = True
    (enriched,) = inline.on_action(service, an_action())
    assert (enriched.enrichment, enriched.profile) == ("unavailable", {})
    assert service.timers(TimeDomain.PROCESSING_TIME) == [] and state.values == {}
    assert fetcher.requested == ["u-1"]  # still asked, in the background: a success clears it


def test_a_later_action_with_its_profile_known_brings_the_held_ones_first():
    inline, fetcher, service, _, _ = setup()
    first, second = an_action(trigger_ts=1000), an_action(trigger_ts=2000)
    inline.on_action(service, first)
    fetcher.known["u-1"] = OK
    out = inline.on_action(service, second)
    assert [a.action_id for a in out] == [first.action_id, second.action_id]
    assert fire_clock(inline, service, 20_000) == []


def test_held_actions_survive_a_restart_in_keyed_state():
    inline, _, service, state, _ = setup()
    inline.on_action(service, an_action())
    restarted, fetcher, *_ = setup(service=service, state=state)
    fetcher.known["u-1"] = OK
    (enriched,) = fire_clock(restarted, service, 10_000 + RECHECK_AFTER_MS[0])
    assert enriched.enrichment == "ok"


def test_block_waits_for_the_lookup_within_the_budget_instead_of_holding():
    inline, fetcher, service, state, _ = setup(block=True)
    (enriched,) = inline.on_action(service, an_action())
    assert enriched.enrichment == "unavailable"
    assert fetcher.waited == [("u-1", BUDGET_MS / 1000)]
    assert service.timers(TimeDomain.PROCESSING_TIME) == [] and state.values == {}


class CountingState(MemoryState):
    """Counts reads: each is a call into the JVM in Flink."""

    reads = 0

    def value(self):
        self.reads += 1
        return super().value()


def test_held_is_read_once_per_user_while_nothing_is_held():
    service = MemoryTimerService(now=10_000)
    inline, fetcher, service, state, _ = setup(service=service, state=CountingState(service))
    fetcher.known["u-1"] = OK
    for ts in (1000, 2000, 3000):
        assert len(inline.on_action(service, an_action(trigger_ts=ts))) == 1
    assert inline.on_timer(service) == []
    assert state.reads == 1
    del fetcher.known["u-1"]
    assert inline.on_action(service, an_action(trigger_ts=4000)) == []  # held: read again
    assert inline.held_actions("u-1")[0][0].trigger_ts == 4000
    fetcher.known["u-1"] = OK
    (released,) = fire_clock(inline, service, 10_000 + RECHECK_AFTER_MS[0])
    assert released.trigger_ts == 4000 and state.values == {}
    reads = state.reads
    inline.on_action(service, an_action(trigger_ts=5000))
    assert state.reads == reads  # cleared by this instance: known empty again


def test_a_new_instance_reads_what_a_checkpoint_restored_even_for_users_it_saw_empty():
    inline, fetcher, service, state, _ = setup()
    inline.on_action(service, an_action(trigger_ts=1000))  # held
    restarted, fetcher, *_ = setup(service=service, state=state)
    fetcher.known["u-1"] = OK
    out = restarted.on_action(service, an_action(trigger_ts=2000))
    assert [a.trigger_ts for a in out] == [1000, 2000]
