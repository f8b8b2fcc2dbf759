package dev.micromoments.flink;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.StateTtlConfig;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.TimeDomain;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The activity filter in front of the Python rule engine (see udfs/engine.py and README, "JVM
 * activity filter"). Input and output are the keyed records of jobs/sources.py: {@code Row(key,
 * payload)}, the payload as jobs/prefilter.py selects it. Every record passes through unchanged
 * except <em>activity</em>: events certainly valid (decoded in SQL) whose type no rule's filters
 * name, which matter only to silence rules, only by their timestamp. Of those the Python engine
 * needs, per user and bucket of {@code bucketMs} (the smallest silence gap), the earliest and the
 * latest, and only after the user's earliest silence start: before any start no silence is armed.
 *
 * <ul>
 *   <li>Before the user's earliest on-time start (an event of a start type, or any record the JVM
 *       could not decode, which might be one): the bucket's earliest and latest are held; a start
 *       at s releases those at or after s (on time, since s is); the watermark passing one drops
 *       it (no start at or before it can come on time any more), so they are held for about the
 *       out-of-orderness bound only.
 *   <li>After it: a bucket's first activity, and any earlier than what was forwarded, goes at once.
 *       A later one is held as the bucket's pending latest (replacing an earlier pending one) until
 *       the watermark is about to pass it (an event-time timer at ts + 1 emits it just before the
 *       watermark goes downstream, so Python still sees it on time), or {@code flushAfterMs} of
 *       wall-clock time passed (so an idle input never strands it: Python's idle forcing waits
 *       longer).
 *   <li>Late records (ts below the watermark) and everything else pass unchanged: Python decides.
 * </ul>
 *
 * A bucket's entry is dropped at its end plus a stable per-user delay below {@code
 * bucketEndSpreadMs}: buckets are aligned to the epoch, and one timer per user at the same instant
 * stalls the task; records of an ended bucket are late whatever the entry holds.
 *
 * <p>Metrics: {@code skipped} (activity never forwarded), {@code held} (held now; a counter moved
 * both ways). Records in = forwarded + skipped + held.
 */
public class CollapseActivity extends KeyedProcessFunction<Row, Row, Row> {

    private static final long serialVersionUID = 1L;

    // Payload fields (jobs/prefilter.py keyed_records_query).
    private static final int DECODED = 5;
    private static final int EVENT_TYPE = 7;
    private static final int TS = 8;

    // Bucket entry fields.
    private static final int FWD_MIN = 0; // earliest ts forwarded (null: none)
    private static final int FWD_MAX = 1; // latest ts forwarded
    private static final int PENDING = 2; // latest record not forwarded yet, ts > FWD_MAX
    private static final int PRE_FIRST = 3; // held before the earliest start
    private static final int PRE_LAST = 4; // null while only one is held
    // (Fields are compared by value, never by identity: the heap backend copies state values
    // while a checkpoint runs, so two fields holding one record may become two records.)

    private final long bucketMs;
    private final Set<String> filteredTypes;
    private final Set<String> startTypes; // null: any event may start a silence
    private final long flushAfterMs; // 0: only the watermark releases a pending latest
    private final long stateTtlMs;
    private final long bucketEndSpreadMs; // 1: every user's bucket ends at the same instant
    private final TypeInformation<Row> recordType;

    private transient ValueState<Long> earliestStart;
    private transient MapState<Long, Row> buckets;
    private transient Counter skipped;
    private transient Counter held;

    public CollapseActivity(
            long bucketMs,
            String[] filteredTypes,
            String[] startTypes,
            long flushAfterMs,
            long stateTtlMs,
            long bucketEndSpreadMs,
            TypeInformation<Row> recordType) {
        if (bucketMs <= 0) {
            throw new IllegalArgumentException("bucketMs must be positive: " + bucketMs);
        }
        this.bucketMs = bucketMs;
        this.filteredTypes = new HashSet<>(Arrays.asList(filteredTypes));
        this.startTypes = startTypes == null ? null : new HashSet<>(Arrays.asList(startTypes));
        this.flushAfterMs = Math.max(0, flushAfterMs);
        this.stateTtlMs = stateTtlMs;
        this.bucketEndSpreadMs = Math.max(1, bucketEndSpreadMs);
        this.recordType = recordType;
    }

    @Override
    public void open(OpenContext openContext) {
        StateTtlConfig ttl =
                StateTtlConfig.newBuilder(java.time.Duration.ofMillis(stateTtlMs))
                        .setUpdateType(StateTtlConfig.UpdateType.OnReadAndWrite)
                        .setStateVisibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                        .disableCleanupInBackground()
                        .cleanupFullSnapshot()
                        .build();
        ValueStateDescriptor<Long> start = new ValueStateDescriptor<>("earliest-start", Types.LONG);
        start.enableTimeToLive(ttl);
        earliestStart = getRuntimeContext().getState(start);
        TypeInformation<Row> entry =
                Types.ROW(Types.LONG, Types.LONG, recordType, recordType, recordType);
        MapStateDescriptor<Long, Row> bucketsDescriptor =
                new MapStateDescriptor<>("activity-buckets", Types.LONG, entry);
        bucketsDescriptor.enableTimeToLive(ttl);
        buckets = getRuntimeContext().getMapState(bucketsDescriptor);
        skipped = getRuntimeContext().getMetricGroup().counter("skipped");
        held = getRuntimeContext().getMetricGroup().counter("held");
    }

    @Override
    public void processElement(Row record, Context ctx, Collector<Row> out) throws Exception {
        Row payload = (Row) record.getField(1);
        long watermark = ctx.timerService().currentWatermark();
        if (!Boolean.TRUE.equals(payload.getField(DECODED))) {
            // Python decodes it; it may be a start of any type, at any time.
            out.collect(record);
            if (startTypes != null) {
                started(Long.MIN_VALUE, watermark, ctx, out);
            }
            return;
        }
        String type = (String) payload.getField(EVENT_TYPE);
        long ts = (Long) payload.getField(TS);
        if (filteredTypes.contains(type)) {
            out.collect(record);
            if (startTypes != null && ts >= watermark && startTypes.contains(type)) {
                started(ts, watermark, ctx, out);
            }
            return;
        }
        if (ts < watermark) {
            out.collect(record); // late: Python says so and counts it
            return;
        }
        if (startTypes != null) {
            Long start = earliestStart.value();
            if (start == null || ts < start) {
                holdBeforeStart(record, ts, ctx);
                return;
            }
        }
        arrive(record, ts, ctx, out);
    }

    /** An on-time start at {@code ts}: activity held from {@code ts} on is released. */
    private void started(long ts, long watermark, Context ctx, Collector<Row> out)
            throws Exception {
        Long start = earliestStart.value();
        if (start != null && start <= ts) {
            return;
        }
        earliestStart.update(ts);
        long from = Math.max(ts, watermark); // held records below the watermark: not on time now
        for (Long bucket : bucketKeys()) {
            Row entry = buckets.get(bucket);
            Row first = (Row) entry.getField(PRE_FIRST);
            Row last = (Row) entry.getField(PRE_LAST);
            if (first == null || tsOf(latest(first, last)) < from) {
                continue;
            }
            boolean firstToo = tsOf(first) >= from;
            // What stays held: the earliest, if an earlier start may still release it.
            entry.setField(PRE_FIRST, firstToo ? null : first);
            entry.setField(PRE_LAST, null);
            buckets.put(bucket, entry);
            if (firstToo) {
                held.dec();
                arrive(first, tsOf(first), ctx, out);
            }
            if (last != null) {
                held.dec();
                arrive(last, tsOf(last), ctx, out);
            }
        }
    }

    private void holdBeforeStart(Row record, long ts, Context ctx) throws Exception {
        long bucket = Math.floorDiv(ts, bucketMs);
        Row entry = entry(bucket);
        Row first = (Row) entry.getField(PRE_FIRST);
        Row last = (Row) entry.getField(PRE_LAST); // null while only one is held
        if (first == null) {
            entry.setField(PRE_FIRST, record);
        } else if (ts < tsOf(first)) {
            if (last == null) {
                entry.setField(PRE_LAST, first);
            } else {
                discard(); // the old earliest is in between now
            }
            entry.setField(PRE_FIRST, record);
        } else if (ts > tsOf(latest(first, last))) {
            if (last != null) {
                discard();
            }
            entry.setField(PRE_LAST, record);
        } else {
            skipped.inc();
            return;
        }
        held.inc();
        buckets.put(bucket, entry);
        ctx.timerService().registerEventTimeTimer(ts + 1); // dropped once the watermark passes it
    }

    /** An on-time activity record after the user's earliest start (or with no start filter). */
    private void arrive(Row record, long ts, Context ctx, Collector<Row> out) throws Exception {
        long bucket = Math.floorDiv(ts, bucketMs);
        Row entry = entry(bucket);
        Long min = (Long) entry.getField(FWD_MIN);
        if (min == null || ts < min) {
            entry.setField(FWD_MIN, ts);
            if (min == null) {
                entry.setField(FWD_MAX, ts);
                // What was forwarded is kept until the bucket's end (its later records compare).
                long end = (bucket + 1) * bucketMs;
                ctx.timerService().registerEventTimeTimer(end + endDelay(record));
            }
            buckets.put(bucket, entry);
            out.collect(record);
            return;
        }
        Row pending = (Row) entry.getField(PENDING);
        if (ts <= (Long) entry.getField(FWD_MAX) || (pending != null && ts <= tsOf(pending))) {
            skipped.inc();
            return;
        }
        if (pending != null) {
            discard();
        }
        held.inc();
        entry.setField(PENDING, record);
        buckets.put(bucket, entry);
        ctx.timerService().registerEventTimeTimer(ts + 1);
        if (flushAfterMs > 0) {
            long at = ctx.timerService().currentProcessingTime() + flushAfterMs;
            // On a coarse grid: a busy user registers few distinct timers.
            ctx.timerService().registerProcessingTimeTimer(at - Math.floorMod(at, 10) + 10);
        }
    }

    /** This user's delay of bucket ends, stable, in [0, bucketEndSpreadMs). */
    private long endDelay(Row record) {
        return Math.floorMod(record.getField(0).hashCode(), bucketEndSpreadMs);
    }

    private Row entry(long bucket) throws Exception {
        Row entry = buckets.get(bucket);
        return entry != null ? entry : new Row(5);
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        boolean eventTime = ctx.timeDomain() == TimeDomain.EVENT_TIME;
        for (Long bucket : bucketKeys()) {
            Row entry = buckets.get(bucket);
            Row pending = (Row) entry.getField(PENDING);
            // `release`: the entry changed.
            boolean release = pending != null && (!eventTime || tsOf(pending) < timestamp);
            if (release) {
                entry.setField(PENDING, null);
                entry.setField(FWD_MAX, tsOf(pending));
                held.dec();
                out.collect(pending);
            }
            Row first = (Row) entry.getField(PRE_FIRST);
            if (eventTime && first != null) {
                // The watermark passed these: no start at or before them can come on time now.
                Row last = (Row) entry.getField(PRE_LAST);
                if (tsOf(latest(first, last)) < timestamp) {
                    discard();
                    if (last != null) {
                        discard();
                    }
                    entry.setField(PRE_FIRST, null);
                    entry.setField(PRE_LAST, null);
                    release = true;
                } else if (tsOf(first) < timestamp) {
                    discard();
                    entry.setField(PRE_FIRST, last);
                    entry.setField(PRE_LAST, null);
                    release = true;
                }
            }
            boolean ended = eventTime && (bucket + 1) * bucketMs <= timestamp;
            if (ended
                    || (entry.getField(FWD_MIN) == null
                            && entry.getField(PENDING) == null
                            && entry.getField(PRE_FIRST) == null)) {
                buckets.remove(bucket);
            } else if (release) {
                buckets.put(bucket, entry);
            }
        }
    }

    /** The user's buckets, copied: the loops over them change the map. */
    private List<Long> bucketKeys() throws Exception {
        List<Long> keys = new ArrayList<>();
        for (Long bucket : buckets.keys()) {
            keys.add(bucket);
        }
        return keys;
    }

    /** The later of a bucket's held records (PRE_LAST is null while only one is held). */
    private static Row latest(Row first, Row last) {
        return last != null ? last : first;
    }

    /** A held record that will never be forwarded. */
    private void discard() {
        held.dec();
        skipped.inc();
    }

    private static long tsOf(Row record) {
        return (Long) ((Row) record.getField(1)).getField(TS);
    }
}
