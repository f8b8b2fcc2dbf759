"""`moments deliver`: its parser (generated from `DeliverConfig`) and `run`, which wires the options
to a record source (the actions topic, or a file with `--actions`) and the shared drain loop.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from contextlib import contextmanager

from jobs.cli import UsageError
from jobs.deliver.config import DeliverConfig
from jobs.deliver.sending import SendOptions
from jobs.options import add_arguments, environment_help, load
from jobs.settings import DELIVERY_DLQ_TOPIC
from udfs.delivery.assemble import build_deliverer
from udfs.delivery.drain import drain, format_summary
from udfs.delivery.files import FileSource
from udfs.delivery.metrics import DeliveryMetrics, serve
from udfs.delivery.pipeline import DeliveryPipeline
from udfs.delivery.settings import DEFAULT_RATE_LIMITS, ENV_LEDGER_DSN
from udfs.delivery.topic import TopicSource

log = logging.getLogger("moments.deliver")

EPILOG = (
    environment_help(DeliverConfig)
    + """

  A vendor is configured when its key is set (Braze also needs its endpoint). At least one must be.
  Actions naming a vendor that is not configured go to the dead-letter topic with that reason.
  Keys are never logged; neither are emails or phone numbers.

rate limits (client side, per endpoint; defaults are the vendors' documented limits):
"""
    + "\n".join(f"  {name:<28}{limit}" for name, limit in DEFAULT_RATE_LIMITS.items())
    + f"""
  (iterable.trigger_workflow: no documented figure found; 10/1s is a conservative default)

dead letters (topic {DELIVERY_DLQ_TOPIC}, or --dlq-file in file mode), one JSON object each:
  {{"action": {{...}}, "destination": "braze", "endpoint": "/users/track", "status": 400,
   "response": "<vendor body>", "reason": "...", "attempts": 1, "failed_at": <epoch ms>}}
  Records that are not valid actions: "action": null, "raw": "<the record>", "source": {{...}}.

exit status: 0 done (or stopped cleanly by SIGTERM / Ctrl-C); 1 file mode with dead letters;
  2 usage or configuration error.
"""
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    add_arguments(parser, DeliverConfig)


def run(args: argparse.Namespace) -> int:
    config = load(DeliverConfig, args)
    stop = threading.Event()
    with sender(config, stop) as deliverer, _stop_on_signals(stop):
        with _source(config, deliverer.metrics) as source:
            summary = drain(
                DeliveryPipeline(deliverer),
                source,
                batch_size=config.batch_size,
                max_actions=config.max_actions,
                stop=stop,
            )
    print(format_summary(summary))
    return 1 if config.actions is not None and summary["dead_lettered_records"] else 0


@contextmanager
def sender(config: SendOptions, stop: threading.Event):
    """Logging, the metrics endpoint and the deliverer (ledger, rate limiters) from the sending
    options, for `moments deliver` and `moments redrive`; closed on exit."""
    logging.basicConfig(
        level=getattr(logging, config.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    settings = config.delivery_settings()
    metrics = DeliveryMetrics()
    server = None
    if config.metrics_address:
        try:
            server = serve(metrics, config.metrics_address)[0]
        except OSError as exc:
            raise UsageError(
                f"--metrics-address {config.metrics_address}: {exc.strerror}"
            ) from None
    deliverer = build_deliverer(settings, stop, metrics)
    if settings.ledger_dsn is None:
        log.warning(
            "no ledger (%s): a restart or rebalance may send accepted actions again", ENV_LEDGER_DSN
        )
    scope = "process" if settings.ledger_dsn is None else settings.rate_limit_scope
    log.info(
        "delivering to %s; ledger: %s; rate limits (%s): %s",
        ", ".join(settings.configured()),
        "memory" if settings.ledger_dsn is None else "postgresql",
        scope,
        ", ".join(f"{k}={v}" for k, v in settings.rate_limits.items()),
    )
    try:
        yield deliverer
    finally:
        deliverer.close()
        if server is not None:
            server.shutdown()


def _source(config: DeliverConfig, metrics: DeliveryMetrics) -> FileSource | TopicSource:
    if config.actions is not None:
        return FileSource(config.actions, config.dlq_path)
    return TopicSource(
        config.bootstrap_servers,
        config.topic,
        config.group_id,
        config.dlq_topic,
        start_from=config.start_from,
        batch_size=config.batch_size,
        linger_s=config.linger_s,
        max_idle_s=config.max_idle_s,
        metrics=metrics,
    )


@contextmanager
def _stop_on_signals(stop: threading.Event):
    """SIGTERM / first Ctrl-C: finish in-flight sends, commit what is final, exit. A second
    Ctrl-C interrupts at once (nothing unfinished is committed, so nothing is lost)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("stopping after in-flight requests (signal %d)", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
