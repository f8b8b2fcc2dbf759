"""Actions with a future `deliver_at`: held without holding up the rest of their partition, and
the commits that keep them from being lost if the process dies while they wait."""

from __future__ import annotations

import threading
import time

import pytest

from tests.unit.delivery.test_drain import AcceptAll
from tests.unit.vendors.actions import make_action
from udfs.delivery.deferred import HeldActions, deliver_at_ms, merge_finished
from udfs.delivery.drain import drain, format_summary
from udfs.delivery.pipeline import DeliveryPipeline, SourceRecord
from udfs.delivery.topic import OffsetFrontier


def record(offset: int, deliver_at: int | None = None, partition: int = 0) -> SourceRecord:
    action = make_action(user_id=f"u-{offset}", destinations=("braze",), deliver_at=deliver_at)
    return SourceRecord(
        action.to_json_bytes(), {"topic": "t", "partition": partition, "offset": offset}
    )


class Clock:
    def __init__(self, now_s: float = 1000.0):
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"deliver_at": 5}', 5),
        (b'{"deliver_at": null}', None),
        (b'{"a": 1}', None),
        (b'{"deliver_at": "5"}', None),
        (b'{"deliver_at": true}', None),
        (b'{"deliver_at": 5', None),
        (b'["deliver_at"]', None),
        (b'{"action": {"deliver_at": 5}}', None),  # a dead letter's action: not deferred
    ],
)
def test_deliver_at_is_a_top_level_integer(value, expected):
    assert deliver_at_ms(value) == expected


def test_only_future_deliver_at_is_held_and_released_in_its_order():
    clock = Clock(1000.0)
    held = HeldActions(clock)
    batch = [record(0, 1_002_000), record(1), record(2, 1_000_000), record(3, 1_001_000)]
    ready, holding = held.split(batch)
    assert [r.position["offset"] for r in ready] == [1, 2]  # due now: not held
    assert holding == [True, False, False, True]
    assert len(held) == 2 and held.seconds_until_due() == 1.0
    assert held.due() == []
    clock.now_s = 1002.5
    assert [r.position["offset"] for r in held.due()] == [3, 0]
    assert len(held) == 0 and held.seconds_until_due() is None


def test_a_record_read_again_is_held_once():
    held = HeldActions(Clock(1000.0))
    held.split([record(0, 1_005_000)])
    _, holding = held.split([record(0, 1_005_000)])  # after a rebalance, from the last commit
    assert holding == [True] and len(held) == 1


def test_merge_finished_puts_held_records_back_in_place():
    assert merge_finished([True, False, True, False], [True, False]) == [False, True, False, False]


def test_the_commit_stops_at_the_lowest_held_offset_across_batches():
    frontier = OffsetFrontier()
    positions = [{"topic": "t", "partition": 0, "offset": n} for n in range(10, 20)]
    held_at_12 = [n != 12 for n in range(10, 20)]
    assert frontier.settle(positions[:5], held_at_12[:5]) == {("t", 0): 12}
    frontier.committed({("t", 0): 12})
    assert frontier.settle(positions[5:], held_at_12[5:]) == {}  # 15..19 done, 12 still held
    assert frontier.held_back(("t", 0)) == 12
    assert frontier.settle([positions[2]], [True]) == {("t", 0): 20}  # released and delivered


def test_the_first_held_record_of_a_partition_commits_nothing():
    frontier = OffsetFrontier()
    positions = [{"topic": "t", "partition": 1, "offset": n} for n in (40, 41)]
    assert frontier.settle(positions, [False, True]) == {}
    assert frontier.settle(positions[:1], [True]) == {("t", 1): 42}


def test_a_revoked_partition_is_forgotten():
    frontier = OffsetFrontier()
    frontier.settle([{"topic": "t", "partition": 0, "offset": 3}], [False])
    frontier.keep_only({("t", 1)})
    assert frontier.held_back(("t", 0)) is None
    # Given back and read again from the last commit, it starts afresh.
    assert frontier.settle([{"topic": "t", "partition": 0, "offset": 3}], [True]) == {("t", 0): 4}


class TopicLike:
    """A source of one batch with positions like a topic's; remembers what was settled, and owns
    the partitions in `owned`."""

    dlq_location = "memory"

    def __init__(self, records, owned=(0,)):
        self.batches, self.settled, self.owned = [list(records)], [], set(owned)

    def read(self, max_records, stop):
        return self.batches.pop(0) if self.batches else None

    def settle(self, records, outcome, letters_durable):
        letters_durable()
        self.settled.append(([r.position["offset"] for r in records], list(outcome.finished)))

    def owns(self, position):
        return position["partition"] in self.owned


def test_drain_delivers_the_rest_at_once_and_the_held_one_when_due():
    due_ms = int((time.time() + 0.3) * 1000)
    deliverer = AcceptAll()
    delivered_at: dict[str, float] = {}
    deliver = deliverer.deliver

    def timed(actions):
        for action in actions:
            delivered_at[action.user_id] = time.time()
        return deliver(actions)

    deliverer.deliver = timed
    source = TopicLike([record(0, due_ms), record(1), record(2)])
    summary = drain(DeliveryPipeline(deliverer), source)
    assert source.settled == [([0, 1, 2], [False, True, True]), ([0], [True])]
    assert delivered_at["u-1"] < due_ms / 1000 <= delivered_at["u-0"]
    assert (summary["records"], summary["deliveries"], summary["deferred_records"]) == (3, 3, 1)
    assert summary["unfinished_records"] == 0
    assert "deferred (held until deliver_at): 1" in format_summary(summary)
    assert deliverer.metrics.deferred_held._value.get() == 0


def test_a_stop_leaves_held_actions_unsettled_and_counted_unfinished():
    stop = threading.Event()
    source = TopicLike([record(0, int((time.time() + 60) * 1000)), record(1)])
    threading.Timer(0.3, stop.set).start()
    summary = drain(DeliveryPipeline(AcceptAll()), source, stop=stop)
    assert source.settled == [([0, 1], [False, True])]
    assert (summary["deliveries"], summary["unfinished_records"]) == (1, 1)


def test_a_held_action_of_a_partition_moved_away_is_not_delivered():
    source = TopicLike([record(0, int((time.time() + 0.1) * 1000), partition=1)], owned=())
    deliverer = AcceptAll()
    summary = drain(DeliveryPipeline(deliverer), source)
    assert deliverer.batches == [] and summary["deliveries"] == 0
    assert source.settled == [([0], [False])]
