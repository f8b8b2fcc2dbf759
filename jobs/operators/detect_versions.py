"""The rule engine's operator with live rules (`moments run --rules-topic`): the detect operator
(jobs/operators/detect.py, with or without inline enrichment) whose engine is the RulesHistory of
the versions in its broadcast state (udfs/live_rules.py), connected to the broadcast rules topic.

Broadcast state "rules-versions" holds every version received, with the T it is applied at; a
checkpoint holds it, so a restart applies the same versions. The history is rebuilt when a record
changes the state, and after a start or restore, lazily at the first event or timer (the state
is reachable only from a callback's context). Each record gives a status row (KIND_RULES_STATUS)
on the rules status topic; a rejected one is logged and counted, and the running versions stay.
"""

from __future__ import annotations

import json
import logging

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedBroadcastProcessFunction
from pyflink.datastream.state import MapStateDescriptor

from jobs import flink_compat
from jobs.operators.rows import KIND_RULES_STATUS
from udfs.host import spread_bucket_ends
from udfs.live_rules import APPLIED, LiveRules, entry_key
from udfs.rules_history import HistoryCampaignStep
from udfs.rules_scope import RulesScope

RULES_STATE = MapStateDescriptor("rules-versions", Types.STRING(), Types.STRING())
log = logging.getLogger(__name__)


class RuleCounters(dict):
    """`rule.<id>.actions` counters, made on first use (a new version brings new rule ids)."""

    def __init__(self, metrics):
        super().__init__()
        self.metrics = metrics

    def __missing__(self, rule_id: str):
        counter = self[rule_id] = self.metrics.add_group("rule", rule_id).counter("actions")
        return counter


class DetectVersions(KeyedBroadcastProcessFunction):
    """`detector` (a DetectMoments) run over the versions of the rules topic; `initial`: the
    --rules file's rules, in force from the start (None: the first version received is);
    `scope`: the --rules-scope rules (udfs/rules_scope.py), or None."""

    def __init__(self, detector, initial, scope=None):
        self.detector = detector
        self.initial = initial
        self.scope = scope

    def open(self, runtime_context) -> None:
        from jobs.operators.campaign import CampaignOperator

        detector = self.detector
        detector.open(runtime_context)
        # Activity buckets only as a scope makes them (udfs/live_rules.py), as the JVM filter
        # built from the same scope does; without one every event is matched as read.
        scope = None if self.scope is None else RulesScope(self.scope)
        detector.host.activity_delay = None if scope is None else spread_bucket_ends(scope.engine)
        metrics = runtime_context.get_metrics_group()
        detector.actions = RuleCounters(metrics)
        rules_metrics = metrics.add_group("rules")
        self.applied = rules_metrics.counter("versions_applied")
        self.rejected = rules_metrics.counter("versions_rejected")
        self.subtask = flink_compat.subtask_index(runtime_context)
        self.live = LiveRules(self.initial, scope)
        self.campaign = detector.campaign or CampaignOperator(
            detector.engine, detector.host, runtime_context
        )
        self._use(self.live.history(()))
        self.loaded = False

    def _use(self, history) -> None:
        detector = self.detector
        detector.engine = detector.host.engine = history
        self.campaign.step = step = HistoryCampaignStep(history)
        detector.campaign = self.campaign if step.active else None

    def _load(self, ctx) -> None:
        """The versions of the broadcast state (restored from a checkpoint, or received)."""
        self._use(self.live.history(ctx.get_broadcast_state(RULES_STATE).items()))
        self.loaded = True

    def process_element(self, value, ctx):
        if not self.loaded:
            self._load(ctx)
        yield from self.detector.process_element(value, ctx)

    def on_timer(self, timestamp: int, ctx):
        if not self.loaded:
            self._load(ctx)
        yield from self.detector.on_timer(timestamp, ctx)

    def process_broadcast_element(self, value, ctx):
        state = ctx.get_broadcast_state(RULES_STATE)
        entries = dict(state.items())
        received = self.live.receive(
            entries,
            entry_key(value[2], value[3]),
            value[0],
            value[1],
            flink_compat.broadcast_watermark(ctx),
        )
        status = {**received.status, "subtask": self.subtask}
        if received.entry is not None:
            state.put(*received.entry)
            entries[received.entry[0]] = received.entry[1]
            self._use(self.live.history(entries.items()))
            self.loaded = True
        if status["status"] == APPLIED:
            self.applied.inc()
            log.info("rules version %s applied from %s", status["version"], status["applied_from"])
        elif status["problems"]:
            self.rejected.inc()
            log.warning("rules version %s rejected: %s", status["version"], status["problems"])
        yield Row(KIND_RULES_STATUS, status["version"], json.dumps(status, sort_keys=True))

    def close(self) -> None:
        self.detector.close()
