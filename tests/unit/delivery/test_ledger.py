"""The ledger's rules in one process (MemoryLedger) against the strict stand-ins: what a vendor
accepted is never sent again, a send with an unknown outcome is counted as ambiguous when it is
sent again, a definite refusal is not, and only a redrive sends a dead-lettered key again."""

from __future__ import annotations

import socket
import threading

import pytest

from moments_testing.vendors import BrazeServer, Faults
from tests.unit.vendors.actions import many
from tests.unit.vendors.test_delivery import deliverer
from udfs.delivery.pipeline import DeliveryPipeline, SourceRecord
from udfs.delivery.transport import HttpTransport, TransportError
from udfs.vendors import HttpRequest
from udfs.vendors.ratelimit import Slot


def records(actions):
    return [SourceRecord(a.to_json_bytes(), {"line": i}) for i, a in enumerate(actions)]


def ambiguous_series(job) -> float:
    return sum(
        sample.value
        for metric in job.metrics.registry.collect()
        if metric.name == "moments_deliver_ambiguous"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def test_a_timeout_after_acceptance_is_an_ambiguous_resend_and_counted():
    with BrazeServer(faults=Faults(queue=["slow"], slow_s=0.6)) as braze:
        job = deliverer(braze, timeout_s=0.3)
        results = job.deliver(many(10, destinations=("braze",)))
        assert all(r.delivered for r in results)
        assert braze.duplicates() == 10
        assert job.stats.ambiguous == 10 == job.ledger.ambiguous_total()
        assert ambiguous_series(job) == 10


def test_refusals_are_not_ambiguous():
    with BrazeServer(faults=Faults(queue=["500", "429", "500"])) as braze:
        job = deliverer(braze)
        results = job.deliver(many(10, destinations=("braze",)))
        assert all(r.delivered for r in results)
        assert braze.duplicates() == 0
        assert job.stats.ambiguous == 0 and job.stats.requests == 4


def test_a_connection_never_opened_sent_nothing():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    request = HttpRequest("t", "t", "POST", f"http://127.0.0.1:{port}/x", "/x", {}, b"{}", ())
    with pytest.raises(TransportError) as refused:
        HttpTransport(timeout_s=1).send(request)
    assert refused.value.maybe_sent is False


def test_accepted_actions_are_never_sent_again():
    with BrazeServer() as braze:
        pipeline = DeliveryPipeline(deliverer(braze))
        batch = records(many(30, destinations=("kafka", "braze")))
        first = pipeline.process(batch)
        again = pipeline.process(batch)
        assert first.delivered == 30 and first.skipped_duplicates == 0
        assert again.delivered == 0 and again.skipped_duplicates == 30
        assert all(again.finished)
        assert braze.duplicates() == 0 and len(braze.delivered_ids()) == 30


def test_dead_letters_are_skipped_until_a_redrive_sends_them():
    with BrazeServer(known_campaigns={"known"}) as braze:
        job = deliverer(braze)
        batch = records(many(3, campaign_id="renamed", destinations=("braze",)))
        first = DeliveryPipeline(job).process(batch)
        assert len(first.dead_keys) == 3
        DeliveryPipeline(job).letters_durable(first)
        rerun = DeliveryPipeline(job).process(batch)
        assert rerun.skipped_duplicates == 3 and not rerun.dead_letters and all(rerun.finished)
        braze.known_campaigns = {"known", "renamed"}  # the fix
        redriven = DeliveryPipeline(job, redrive=True).process(batch)
        assert redriven.delivered == 3
        assert braze.delivered_ids() == {action_id for action_id, _ in first.dead_keys}
        again = DeliveryPipeline(job, redrive=True).process(batch)
        assert again.delivered == 0 and braze.duplicates() == 0


def test_a_stop_leaves_unsent_keys_unfinished():
    stop = threading.Event()
    stop.set()
    with BrazeServer() as braze:
        outcome = DeliveryPipeline(deliverer(braze, stop=stop)).process(records(many(5)))
        assert outcome.finished == [False] * 5 and braze.requests == 0


class LateSlots:
    """A shared-limiter stand-in: every slot is due at once; `late_s` as a shared one has."""

    late_s = 0.05

    def __init__(self) -> None:
        self.reserved = 0
        self.answered_slots: list[Slot] = []

    def reserve(self) -> Slot:
        self.reserved += 1
        return Slot(self.reserved, 0.0)

    def clear_in(self, slot: Slot) -> float:
        return 0.0

    def answered(self, slot: Slot) -> None:
        self.answered_slots.append(slot)

    def paused_for(self) -> float:
        return 0.0

    def pause(self, seconds: float) -> None:
        pass


def test_a_slot_woken_up_for_too_late_is_booked_again():
    limiter = LateSlots()
    ticks = iter([0.0, 1.0, 5.0, 5.01])  # first wake-up 1 s late, the second on time
    with BrazeServer() as braze:
        job = deliverer(braze)
        job.limiters = {"braze.users_track": limiter}
        job._clock = lambda: next(ticks)
        assert all(r.delivered for r in job.deliver(many(3, destinations=("braze",))))
    assert limiter.reserved == 2
    # The slot given up is answered at once (it holds back no later send), the used one after
    # its send.
    assert [slot.seq for slot in limiter.answered_slots] == [1, 2]
    rebooked = job.metrics.rate_limit_rebooked.labels("braze.users_track")._value.get()
    assert rebooked == 1
