"""Defaults shared by every entry point: topic names, local service addresses, environment names.

One place, so the jobs, the local scripts, the compose file and the manifests agree
(tests check it).
"""

from __future__ import annotations

EVENTS_TOPIC = "moments.events"
ACTIONS_TOPIC = "moments.actions"
EVENTS_DLQ_TOPIC = "moments.events.dlq"
LATE_EVENTS_TOPIC = "moments.events.late"
DELIVERY_DLQ_TOPIC = "moments.delivery.dlq"
SUPPRESSED_TOPIC = "moments.actions.suppressed"
OUTCOMES_TOPIC = "moments.outcomes"
RULES_TOPIC = "moments.rules"
RULES_STATUS_TOPIC = "moments.rules.status"

ALL_TOPICS = (
    EVENTS_TOPIC,
    ACTIONS_TOPIC,
    EVENTS_DLQ_TOPIC,
    LATE_EVENTS_TOPIC,
    DELIVERY_DLQ_TOPIC,
    SUPPRESSED_TOPIC,
    OUTCOMES_TOPIC,
    RULES_TOPIC,
    RULES_STATUS_TOPIC,
)
# Topic configs beyond the defaults: the rules topic keeps the latest record per key (compacted).
TOPIC_CONFIGS = {RULES_TOPIC: {"cleanup.policy": "compact"}}

# Local (no-Docker) services started by deploy/local/*.sh, loopback only.
LOCAL_KAFKA_BOOTSTRAP = "127.0.0.1:19092"
LOCAL_CRM_DSN = "postgresql://moments@127.0.0.1:55432/crm"

ENV_KAFKA_BOOTSTRAP = "KAFKA_BOOTSTRAP_SERVERS"
ENV_CRM_DSN = "CRM_DSN"
