"""The detection job's dataflow, top-down as DESIGN.md draws it: source -> decode -> watermarks ->
key_by(user_id) -> rule engine -> enrichment -> output rows (actions, late events, dead letters).
Kafka mode decodes, prefilters and keys in the JVM, so the engine is the first Python operator.
"""

from __future__ import annotations

from jobs.detection.config import DetectConfig


def build_pipeline(env, t_env, config: DetectConfig):
    """The topology, source to output rows; returns the union of actions, late and DLQ rows."""
    from jobs.operators.enrich import enrich_actions
    from jobs.operators.rows import DLQ_TAG, LATE_TAG

    if config.kafka_mode:
        keyed, side_outputs = kafka_keyed_events(t_env, config), []
    else:
        keyed, side_outputs = file_keyed_events(env, config)
    detector, output_type, enrich = detect_operator(config)
    if config.rules_topic:
        keyed, detector = live_rules(t_env, config, keyed, detector)
    detected = keyed.process(detector, output_type=output_type).name("detect").uid("detect")
    if config.kafka_mode:
        side_outputs.append(detected.get_side_output(DLQ_TAG))
    side_outputs.append(detected.get_side_output(LATE_TAG))
    actions = enrich_actions(env, detected, config) if enrich else detected
    return actions.union(*side_outputs)


def kafka_keyed_events(t_env, config: DetectConfig):
    """Decoded (when certainly valid) and keyed in the JVM; the Kafka source made the watermarks,
    per partition. Records Flink SQL cannot vouch for are decoded by the detect operator itself,
    which dead-letters the invalid ones."""
    from jobs.connectors.kafka_source import kafka_keyed_records

    return kafka_keyed_records(t_env, config)


def live_rules(t_env, config: DetectConfig, keyed, detector):
    """The keyed events connected to the broadcast rules topic, and the detect operator run over
    the versions it brings (the --rules file, if given, in force until the first)."""
    from jobs.connectors.rules_source import rules_broadcast
    from jobs.operators.detect_versions import DetectVersions

    initial = config.rules or None  # an empty rules file is no initial version
    operator = DetectVersions(detector, initial, config.rules_scope)
    return keyed.connect(rules_broadcast(t_env, config)), operator


def file_keyed_events(env, config: DetectConfig):
    """The events file decoded in file order (lateness decided there, as the backtest does),
    timestamped and keyed by user; returns the keyed stream and decode's DLQ and late outputs."""
    from pyflink.common import Duration, Types, WatermarkStrategy

    from jobs.connectors.files import file_lines
    from jobs.operators.decode import DecodeEvents, EventTimeOf
    from jobs.operators.rows import DLQ_TAG, LATE_TAG

    decoder = DecodeEvents(
        source=str(config.events_path),
        replay_lateness_ms=config.max_out_of_orderness_ms,
        max_future_ms=config.max_future_ms,
    )
    decoded = (
        file_lines(env, config)
        .process(decoder, output_type=Types.PICKLED_BYTE_ARRAY())
        .name("decode")
        .uid("decode")
        .set_parallelism(1)
    )
    # Flink emits max_ts - d - 1; the engine's (and backtest's) watermark is max_ts - bound.
    bound = config.max_out_of_orderness_ms
    watermarks = (
        WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(bound - 1))
        if bound > 0
        else WatermarkStrategy.for_monotonous_timestamps()
    ).with_timestamp_assigner(EventTimeOf())
    timed = (
        decoded.assign_timestamps_and_watermarks(watermarks)
        .name("event-time")
        .uid("event-time")
        .set_parallelism(1)
    )
    keyed = timed.key_by(lambda record: record[0], key_type=Types.STRING())
    return keyed, [decoded.get_side_output(DLQ_TAG), decoded.get_side_output(LATE_TAG)]


def detect_operator(config: DetectConfig):
    """The rule engine's operator, its output type and whether actions still need enriching
    (the `inline` layout enriches inside the operator; `sync`/`async` in one after it)."""
    from pyflink.common import Types

    from jobs.operators.detect import DetectMoments
    from jobs.operators.rows import OUTPUT_ROW

    file_mode = not config.kafka_mode
    enrich = config.crm.backend != "none"
    inline = enrich and config.enrichment_layout == "inline"
    if enrich and not inline and uses_campaign_layer(config.rules):
        from jobs.options import OptionsError

        raise OptionsError(
            f"--enrichment-layout {config.enrichment_layout}: the rules use the campaign layer "
            "(audience, experiment, goal or limits), whose fate step needs the profile inside the "
            "detect operator: use --enrichment-layout inline (the default)"
        )
    if inline:
        from jobs.operators.enrich_inline import EnrichingDetectMoments

        detector_class, extra = EnrichingDetectMoments, {"crm_settings": config.crm}
        extra["block"] = file_mode
    else:
        detector_class, extra = DetectMoments, {"emit_json": not enrich}
    detector = detector_class(
        config.rules,
        state_ttl_ms=config.state_ttl_ms,
        idle_fire_after_ms=config.idle_fire_after_ms,
        event_time_detected_at=file_mode,
        decode_rows=not file_mode,
        max_future_ms=config.max_future_ms,
        **extra,
    )
    output_type = Types.PICKLED_BYTE_ARRAY() if enrich and not inline else OUTPUT_ROW
    return detector, output_type, enrich and not inline


def uses_campaign_layer(rules) -> bool:
    from udfs.campaign.step import CampaignStep
    from udfs.engine import Engine

    return CampaignStep(Engine(rules)).active
