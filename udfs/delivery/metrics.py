"""The Prometheus series of `moments deliver` and `moments redrive`, on a registry of their own
(tests make as many as they like); `serve` exposes one on `/metrics`. Labels carry vendors,
endpoints and reasons, never a user or an action.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

log = logging.getLogger("moments.deliver")

VENDOR_ENDPOINT = ("vendor", "endpoint")
# Trigger -> accepted: the alert threshold (500 ms) sits on a bucket boundary.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_start_time_seconds: restarts
        r = self.registry
        self.delivered = Counter(
            "moments_deliver_delivered", "Actions a vendor accepted.", VENDOR_ENDPOINT, registry=r
        )
        self.retried = Counter(
            "moments_deliver_retried",
            "Requests sent again (reason: rate_limited, server_error, timeout, connection).",
            (*VENDOR_ENDPOINT, "reason"),
            registry=r,
        )
        self.failed = Counter(
            "moments_deliver_failed",
            "Sends without a success (reason: rate_limited, server_error, client_error, timeout, "
            "connection); each is retried or dead-lettered.",
            (*VENDOR_ENDPOINT, "reason"),
            registry=r,
        )
        self.dead_lettered = Counter(
            "moments_deliver_dead_lettered",
            "Records written to the dead-letter topic (vendor 'none': not a valid action).",
            VENDOR_ENDPOINT,
            registry=r,
        )
        self.ambiguous = Counter(
            "moments_deliver_ambiguous",
            "Actions sent again after a send whose outcome is unknown (timeout, dropped "
            "connection, a replica killed mid-request): the only possible duplicates.",
            VENDOR_ENDPOINT,
            registry=r,
        )
        self.skipped = Counter(
            "moments_deliver_skipped",
            "Actions not sent because the ledger holds them final (accepted, dead).",
            ("vendor", "state"),
            registry=r,
        )
        self._histograms(r)

    def _histograms(self, r: CollectorRegistry) -> None:
        self.batch_records = Histogram(
            "moments_deliver_batch_records",
            "Records per batch read from the source.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000),
            registry=r,
        )
        self.request_actions = Histogram(
            "moments_deliver_request_actions",
            "Actions per vendor request.",
            VENDOR_ENDPOINT,
            buckets=(1, 5, 10, 25, 50, 75, 100, 250, 500, 1000),
            registry=r,
        )
        self.trigger_to_accepted = Histogram(
            "moments_deliver_trigger_to_accepted_seconds",
            "Wall-clock time from an action's trigger_ts (or deliver_at, if deferred) to the "
            "vendor's acceptance.",
            VENDOR_ENDPOINT,
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "moments_deliver_consumer_lag",
            "Records of the actions topic not yet read by this replica, per assigned partition.",
            ("topic", "partition"),
            registry=r,
        )
        self.deferred_held = Gauge(
            "moments_deliver_deferred_held",
            "Actions held in this replica until their deliver_at (deferred by quiet hours).",
            registry=r,
        )
        self.rate_limit_rebooked = Counter(
            "moments_deliver_rate_limit_rebooked",
            "Shared rate-limit slots booked again because a thread woke up too late for its own.",
            ("endpoint",),
            registry=r,
        )
        self.rate_limit_wait = Counter(
            "moments_deliver_rate_limit_wait_seconds",
            "Time requests waited for a rate-limit slot (client side).",
            ("endpoint",),
            registry=r,
        )


def serve(metrics: DeliveryMetrics, address: str):
    """Serve `/metrics` on `HOST:PORT` (port 0: any free one); returns (server, port)."""
    from prometheus_client import start_http_server

    host, _, port = address.rpartition(":")
    server, _thread = start_http_server(int(port), host or "0.0.0.0", registry=metrics.registry)
    bound = server.server_address[1]
    log.info("metrics on http://%s:%d/metrics", host or "0.0.0.0", bound)
    return server, bound
