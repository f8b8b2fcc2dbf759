package dev.micromoments.flink;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;

/**
 * {@code moments_decode(value BYTES, max_future_ms BIGINT)}: one pass over a raw Kafka record, in
 * the JVM, so the Python operator gets fields instead of JSON to parse (Flink's
 * JSON_VALUE/JSON_QUERY parse the whole record once per call).
 *
 * <p>Returns {@code ROW(user_id, decoded, event_id, event_type, ts, device, properties)}. {@code
 * decoded} is true only when the record is certainly a valid event by the event contract and its
 * guard rails as the Python decoder (udfs/decode.py) reads it ({@link EventReader}: at most 1 MiB;
 * ids of 1..512 bytes; ts an integer in [0, now + max_future_ms], max_future_ms negative for no
 * future bound), and every field here is what that decoder would make of it; properties is the
 * object's exact text from the record, for Python's json.loads. Anything else (RFC 3339 ts, 5.0,
 * duplicate contract fields, escaped lone surrogates, invalid JSON, a poisoned ts or id) gets
 * {@code decoded = false} and Python decides, so this never changes a verdict: "now" only grows
 * between this call and Python's, so what is within the bound here is within it there. {@code
 * user_id} is set whenever the record has it as a string (the stream is keyed on it), else ''.
 *
 * <p>Not deterministic on purpose: the planner would otherwise inline one call per field read.
 */
public class DecodeEvent extends ScalarFunction {

    private transient JsonFactory factory;
    private transient EventReader reader;

    @Override
    public void open(FunctionContext context) {
        factory = new JsonFactory();
        reader = new EventReader();
    }

    @Override
    public boolean isDeterministic() {
        return false;
    }

    @DataTypeHint(
            "ROW<user_id STRING, decoded BOOLEAN, event_id STRING, event_type STRING, ts BIGINT, "
                    + "device STRING, properties STRING>")
    public Row eval(byte[] value, Long maxFutureMs) {
        if (factory == null) {
            open(null);
        }
        EventReader r = reader;
        r.read(factory, value, maxFutureMs, System.currentTimeMillis());
        String key = r.userId == null ? "" : r.userId;
        if (!r.valid || r.tsIsString) {
            return Row.of(key, false, null, null, null, null, null);
        }
        return Row.of(key, true, r.eventId, r.eventType, r.ts, r.device, r.properties);
    }
}
