"""CRM enrichment of the detection job's actions: `enrich_actions` adds the configured operator
(`sync`: a cached blocking lookup in the thread-mode job; `async`: PyFlink's AsyncDataStream in a
process-mode operator) and every action leaves as an output row with its profile.
"""

from __future__ import annotations

from pyflink.common import Row
from pyflink.datastream import ProcessFunction

from jobs import flink_compat
from jobs.operators.rows import KIND_ACTION, OUTPUT_ROW


def enrich_actions(env, actions, config):
    """Actions -> output rows with the CRM profile, in the configured layout."""
    from pyflink.common import Time

    if config.enrichment_layout == "sync":
        return (
            actions.process(EnrichActions(config.crm), output_type=OUTPUT_ROW)
            .name("enrich")
            .uid("enrich")
        )
    from pyflink.datastream import AsyncDataStream

    # PyFlink picks each Python operator's runtime (thread or process) when it is added, from
    # the environment's configuration, and refuses an AsyncFunction in thread mode: so the
    # operators before this one stay in thread mode and this one alone runs in process mode.
    j_conf = flink_compat.environment_configuration(env)
    j_conf.setString("python.execution-mode", "process")
    # The Flink-side timeout backs up the CRM client's own (which answers `unavailable` first).
    timeout = Time.milliseconds(config.crm.timeout_ms * (config.crm.retries + 1) + 1_000)
    enriched = (
        AsyncDataStream.unordered_wait(
            actions,
            async_enrich_function(config.crm),
            timeout,
            capacity=256,
            output_type=OUTPUT_ROW,
        )
        .name("enrich")
        .uid("enrich")
    )
    j_conf.setString("python.execution-mode", config.execution_mode)
    return enriched


class EnrichmentMetrics:
    """ok, missing, unavailable, cache_hits and crm_latency_ms_total (sum, for averages across
    subtasks), in the operator's metric group or, with `group`, a group of it (the inline
    layout's "enrich"); `held` counts actions that waited for their profile (inline layout).

    `latest_gauge`: also crm_latency_ms, the latest lookup, a gauge read from Python: only in
    process mode (the async layout). In thread mode Flink's metrics thread calls the gauge into
    the task's interpreter, which crashed the TaskManager (SIGSEGV in libpython, PyFlink 2.2.1)."""

    def __init__(self, runtime_context, group: str | None = None, latest_gauge: bool = False):
        metrics = runtime_context.get_metrics_group()
        if group is not None:
            metrics = metrics.add_group(group)
        self.outcomes = {s: metrics.counter(s) for s in ("ok", "missing", "unavailable")}
        self.cache_hits = metrics.counter("cache_hits")
        self.held = metrics.counter("held")
        self.latency_total = metrics.counter("crm_latency_ms_total")
        self.last_latency_ms = 0
        if latest_gauge:
            metrics.gauge("crm_latency_ms", lambda: int(self.last_latency_ms))

    def record(self, result) -> None:
        self.outcomes[result.status].inc()
        if result.cached:
            self.cache_hits.inc()
        self.last_latency_ms = result.latency_ms
        self.latency_total.inc(int(result.latency_ms))


def _enriched_row(action, result) -> Row:
    from udfs.enrich import enrich

    enriched = enrich(action, result)
    return Row(KIND_ACTION, enriched.user_id, enriched.to_json_bytes().decode())


class EnrichActions(ProcessFunction):
    """Action -> Row with the CRM profile: a cached, time-bounded synchronous lookup.

    Blocking is bounded by the CRM settings' timeout (retries included) and only actions pass here,
    a small fraction of events; a CRM that is down or slow gives `enrichment: unavailable`, an
    unknown user `missing`, and the action is always emitted.
    """

    def __init__(self, crm_settings):
        self.crm_settings = crm_settings

    def open(self, runtime_context) -> None:
        from udfs.crm import build_lookup

        self.lookup = build_lookup(self.crm_settings)
        self.metrics = EnrichmentMetrics(runtime_context)

    def process_element(self, action, ctx):
        result = self.lookup.lookup(action.user_id)
        self.metrics.record(result)
        yield _enriched_row(action, result)

    def close(self) -> None:
        if getattr(self, "lookup", None) is not None:
            self.lookup.close()


def async_enrich_function(crm_settings):
    """The same enrichment as an AsyncFunction (PyFlink's AsyncDataStream; process mode only)."""
    from pyflink.datastream.functions import AsyncFunction

    class AsyncEnrichActions(AsyncFunction):
        def __init__(self, settings):
            self.crm_settings = settings

        def open(self, runtime_context) -> None:
            from udfs.crm import build_lookup

            self.lookup = build_lookup(self.crm_settings)
            self.metrics = EnrichmentMetrics(runtime_context, latest_gauge=True)

        async def async_invoke(self, action):
            result = await self.lookup.alookup(action.user_id)
            self.metrics.record(result)
            return [_enriched_row(action, result)]

        def timeout(self, action):
            from udfs.crm import LookupResult

            result = LookupResult("unavailable", reason="flink async timeout")
            self.metrics.record(result)
            return [_enriched_row(action, result)]

        def close(self) -> None:
            if getattr(self, "lookup", None) is not None:
                self.lookup.close()

    return AsyncEnrichActions(crm_settings)
