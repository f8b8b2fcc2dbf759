package dev.micromoments.flink;

import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.StateTtlConfig;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.TimeDomain;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Holds each user's events in the JVM until the watermark passes them, so the Python rule engine
 * matches a user's events in one call, when they are due, instead of buffering each (a call) and
 * taking an event-time timer callback for it (another). Input and output are the keyed records of
 * jobs/connectors/kafka_source.py, {@code Row(key, payload)}; the payload's {@code release} and
 * {@code batch} fields (jobs/connectors/payload.py) say what Python does with one:
 *
 * <ul>
 *   <li>{@code release} null: an ordinary record, as before this operator (buffered, timed, late
 *       or dead-lettered by Python). Everything this operator does not hold passes at once:
 *       records the JVM did not decode, late records (ts below the watermark: Python says so and
 *       counts them), and any record while the input looks idle (below).
 *   <li>{@code release} W: a user's held records with ts below the watermark W, as one record,
 *       emitted by an event-time timer at ts + 1 just before W goes downstream: one held record's
 *       payload, with the others packed in {@code batch} (null when there are none) as a
 *       JSON array of {@code [ts, event_id, event_type, device, properties, raw value in
 *       base64]}. Python matches the user up to W in that call: what its own timer at ts + 1
 *       would have done once W arrived.
 * </ul>
 *
 * <p>Liveness: Python forces an idle user's event time once neither an element nor a watermark
 * move reached it for {@code idle_fire_after} (udfs/host.py). A held record must be in Python by
 * then, or it would arrive late. So a record is held only while the watermark moved in the last
 * {@code flushAfterMs} (the operator sees each watermark as it arrives, {@link #watermarkArrived},
 * no later than Python does), and a processing-time timer hands the user's held records to Python
 * as ordinary ones once the watermark stood still for {@code flushAfterMs}: at the latest 2 x
 * flushAfterMs + one timer step after the last move, which jobs/detection/config.py keeps below
 * idle_fire_after. {@code flushAfterMs} 0: no idle forcing, never flushed.
 *
 * <p>Metrics: {@code held} (held now; moved both ways), {@code released}, {@code flushed}.
 */
public class ReleaseOnWatermark extends KeyedProcessFunction<Row, Row, Row> {

    private static final long serialVersionUID = 1L;

    // Payload fields: jobs/connectors/payload.py PAYLOAD_FIELDS (tests/unit/jobs/test_payload.py).
    static final int VALUE = 1;
    static final int DECODED = 5;
    static final int EVENT_ID = 6;
    static final int EVENT_TYPE = 7;
    static final int TS = 8;
    static final int DEVICE = 9;
    static final int PROPERTIES = 10;
    static final int RELEASE = 11;
    static final int BATCH = 12;

    private final long flushAfterMs;
    private final long stateTtlMs;
    private final TypeInformation<Row> recordType;

    private transient ListState<Row> held;
    private transient Counter heldCount;
    private transient Counter released;
    private transient Counter flushed;
    // The latest watermark and the processing time it arrived at (ReleaseOperator tells).
    private transient long watermark;
    private transient long movedAt;

    public ReleaseOnWatermark(long flushAfterMs, long stateTtlMs, TypeInformation<Row> recordType) {
        this.flushAfterMs = Math.max(0, flushAfterMs);
        this.stateTtlMs = stateTtlMs;
        this.recordType = recordType;
    }

    @Override
    public void open(OpenContext openContext) {
        StateTtlConfig ttl =
                StateTtlConfig.newBuilder(java.time.Duration.ofMillis(stateTtlMs))
                        .setUpdateType(StateTtlConfig.UpdateType.OnCreateAndWrite)
                        .setStateVisibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                        .disableCleanupInBackground()
                        .cleanupFullSnapshot()
                        .build();
        ListStateDescriptor<Row> descriptor = new ListStateDescriptor<>("held-events", recordType);
        descriptor.enableTimeToLive(ttl);
        held = getRuntimeContext().getListState(descriptor);
        heldCount = getRuntimeContext().getMetricGroup().counter("held");
        released = getRuntimeContext().getMetricGroup().counter("released");
        flushed = getRuntimeContext().getMetricGroup().counter("flushed");
        watermark = Long.MIN_VALUE;
        movedAt = System.currentTimeMillis();
    }

    /** A watermark reached the operator at processing time {@code now}, before its timers. */
    public void watermarkArrived(long mark, long now) {
        if (mark != watermark) {
            watermark = mark;
            movedAt = now;
        }
    }

    @Override
    public void processElement(Row record, Context ctx, Collector<Row> out) throws Exception {
        Row payload = (Row) record.getField(1);
        if (!Boolean.TRUE.equals(payload.getField(DECODED))) {
            out.collect(record);
            return;
        }
        long ts = (Long) payload.getField(TS);
        if (ts < ctx.timerService().currentWatermark()) {
            out.collect(record);
            return;
        }
        long now = ctx.timerService().currentProcessingTime();
        if (flushAfterMs > 0 && now - movedAt > flushAfterMs) {
            out.collect(record); // the input looks idle: Python's idle forcing needs it now
            return;
        }
        held.add(record);
        heldCount.inc();
        ctx.timerService().registerEventTimeTimer(ts + 1);
        if (flushAfterMs > 0) {
            ctx.timerService().registerProcessingTimeTimer(ActivityFilter.roundUp(now + flushAfterMs));
        }
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        Iterable<Row> records = held.get();
        if (records == null) {
            return;
        }
        if (ctx.timeDomain() == TimeDomain.PROCESSING_TIME) {
            long now = ctx.timerService().currentProcessingTime();
            if (now - movedAt < flushAfterMs) {
                ctx.timerService().registerProcessingTimeTimer(
                        ActivityFilter.roundUp(movedAt + flushAfterMs));
                return;
            }
            long count = 0;
            for (Row record : records) {
                out.collect(record);
                count++;
            }
            held.clear();
            heldCount.dec(count);
            flushed.inc(count);
            return;
        }
        long mark = ctx.timerService().currentWatermark();
        List<Row> release = new ArrayList<>();
        List<Row> keep = new ArrayList<>();
        for (Row record : records) {
            long ts = (Long) ((Row) record.getField(1)).getField(TS);
            (ts < mark ? release : keep).add(record);
        }
        if (release.isEmpty()) {
            return;
        }
        if (keep.isEmpty()) {
            held.clear();
        } else {
            held.update(keep);
        }
        int last = release.size() - 1; // any order: Python matches in (ts, event_id) order
        Row payload = Row.copy((Row) release.get(last).getField(1));
        payload.setField(RELEASE, mark);
        payload.setField(BATCH, last == 0 ? null : pack(release.subList(0, last)));
        out.collect(Row.of(release.get(last).getField(0), payload));
        heldCount.dec(release.size());
        released.inc(release.size());
    }

    /** Records as the {@code batch} field's JSON array (see the class comment). */
    public static String pack(List<Row> records) {
        StringBuilder json = new StringBuilder(records.size() * 160).append('[');
        for (Row record : records) {
            Row payload = (Row) record.getField(1);
            if (json.length() > 1) {
                json.append(',');
            }
            json.append('[').append((long) (Long) payload.getField(TS)).append(',');
            string(json, (String) payload.getField(EVENT_ID)).append(',');
            string(json, (String) payload.getField(EVENT_TYPE)).append(',');
            string(json, (String) payload.getField(DEVICE)).append(',');
            String properties = (String) payload.getField(PROPERTIES); // JSON text, or null
            json.append(properties == null ? "null" : properties).append(',');
            byte[] raw = (byte[]) payload.getField(VALUE);
            json.append('"').append(Base64.getEncoder().encodeToString(raw)).append("\"]");
        }
        return json.append(']').toString();
    }

    /** A JSON string (or null), as Python's json module reads it back. */
    static StringBuilder string(StringBuilder json, String value) {
        if (value == null) {
            return json.append("null");
        }
        json.append('"');
        for (int i = 0; i < value.length(); i++) {
            char c = value.charAt(i);
            if (c == '"' || c == '\\') {
                json.append('\\').append(c);
            } else if (c < 0x20) {
                json.append(String.format("\\u%04x", (int) c));
            } else {
                json.append(c);
            }
        }
        return json.append('"');
    }
}
