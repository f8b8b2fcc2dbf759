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
 *   <li>{@code release} W: the held records with ts below the watermark W, of every user whose
 *       event-time timer (at ts + 1) W fired, as ONE record emitted just before W goes
 *       downstream ({@link ReleaseOperator}): one held record (the carrier: its key and payload),
 *       with all the others packed in {@code batch} (null when there are none) as a JSON array
 *       of {@code [user_id, [[ts, event_id, event_type, device, properties, raw value in
 *       base64], ...]]}, one entry per user, the carrier's user first (its other records). Python
 *       switches its keyed state to each user in turn and matches the user up to W in that one
 *       call: what its own timer at ts + 1 would have done once W arrived.
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
    // Released by the timers of the watermark being processed, per user, not yet emitted.
    private transient List<List<Row>> step;
    private transient long stepMark;

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
        step = new ArrayList<>();
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
        step.add(release); // emitted with the other users' by takeStep, before W goes on
        stepMark = mark;
        heldCount.dec(release.size());
        released.inc(release.size());
    }

    /**
     * The records the timers released since the last call, as one record (see the class
     * comment), or null when there are none. Any order within a user: Python matches a user's
     * events in (ts, event_id) order.
     */
    public Row takeStep() {
        if (step.isEmpty()) {
            return null;
        }
        List<Row> first = step.get(0);
        Row carrier = first.get(first.size() - 1);
        Row payload = Row.copy((Row) carrier.getField(1));
        payload.setField(RELEASE, stepMark);
        boolean alone = step.size() == 1 && first.size() == 1;
        payload.setField(BATCH, alone ? null : packStep(step));
        step = new ArrayList<>();
        return Row.of(carrier.getField(0), payload);
    }

    /**
     * Users' records as the {@code batch} field's JSON array: {@code [user_id, [records]]} per
     * user, the first user's last record left out (it is the carrier).
     */
    public static String packStep(List<List<Row>> users) {
        StringBuilder json = new StringBuilder(users.size() * 200).append('[');
        for (int u = 0; u < users.size(); u++) {
            List<Row> records = users.get(u);
            if (u > 0) {
                json.append(',');
            }
            json.append('[');
            string(json, (String) records.get(0).getField(0)).append(',');
            pack(json, u == 0 ? records.subList(0, records.size() - 1) : records).append(']');
        }
        return json.append(']').toString();
    }

    /** One user's records as a JSON array of {@code [ts, ..., raw]} (see the class comment). */
    static StringBuilder pack(StringBuilder json, List<Row> records) {
        json.append('[');
        boolean first = true;
        for (Row record : records) {
            Row payload = (Row) record.getField(1);
            if (!first) {
                json.append(',');
            }
            first = false;
            json.append('[').append((long) (Long) payload.getField(TS)).append(',');
            string(json, (String) payload.getField(EVENT_ID)).append(',');
            string(json, (String) payload.getField(EVENT_TYPE)).append(',');
            string(json, (String) payload.getField(DEVICE)).append(',');
            String properties = (String) payload.getField(PROPERTIES); // JSON text, or null
            json.append(properties == null ? "null" : properties).append(',');
            byte[] raw = (byte[]) payload.getField(VALUE);
            json.append('"').append(Base64.getEncoder().encodeToString(raw)).append("\"]");
        }
        return json.append(']');
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
