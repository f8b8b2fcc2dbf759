package dev.micromoments.flink;

import java.io.Serializable;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.zip.CRC32;

import org.apache.flink.types.Row;

/**
 * The rule of the JVM activity filter, apart from Flink's runtime: {@link CollapseActivity} hosts
 * it in a keyed operator, and a test drives it record by record against its Python model
 * (udfs/activity_filter.py), which states the rule. All state, timers and output go through a
 * {@link Host}, one user at a time.
 *
 * <p>Every record passes through unchanged except <em>activity</em>: events certainly valid
 * (decoded in SQL) whose type no rule's filters name, which matter only to silence rules, only by
 * their timestamp. Of those the Python engine needs, per user and bucket of {@code bucketMs} (the
 * smallest silence gap), the earliest and the latest, and only after the user's earliest silence
 * start: before any start no silence is armed.
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
 * bucketEndSpreadMs} (the Python operator's, {@link #bucketEndDelay}): buckets are aligned to the
 * epoch, and one timer per user at the same instant stalls the task; records of an ended bucket
 * are late whatever the entry holds.
 */
public final class ActivityFilter implements Serializable {

    private static final long serialVersionUID = 1L;

    /** Processing-time timers on this grid, as the Python operator's (udfs/timing.py). */
    public static final long TIMER_GRID_MS = 100;

    // Payload fields: jobs/connectors/payload.py PAYLOAD_FIELDS (tests/unit/jobs/test_payload.py).
    static final int DECODED = 5;
    static final int EVENT_ID = 6;
    static final int EVENT_TYPE = 7;
    static final int TS = 8;

    // Bucket entry fields.
    static final int FWD_MIN = 0; // earliest ts forwarded (null: none)
    static final int FWD_MAX = 1; // latest ts forwarded
    static final int PENDING = 2; // latest record not forwarded yet, ts > FWD_MAX
    static final int PRE_FIRST = 3; // held before the earliest start
    static final int PRE_LAST = 4; // null while only one is held
    static final int ENTRY_FIELDS = 5;
    // (Fields are compared by value, never by identity: the heap backend copies state values
    // while a checkpoint runs, so two fields holding one record may become two records.)

    /** One user's state, timers, output and metrics, as the host keeps them. */
    public interface Host {
        long currentWatermark();

        long currentProcessingTime();

        Long earliestStart() throws Exception;

        void setEarliestStart(long ts) throws Exception;

        /** The bucket's entry, null if none (the caller puts it back after changing it). */
        Row bucket(long bucket) throws Exception;

        void putBucket(long bucket, Row entry) throws Exception;

        void removeBucket(long bucket) throws Exception;

        Iterable<Long> bucketKeys() throws Exception;

        void registerEventTimeTimer(long time);

        void registerProcessingTimeTimer(long time);

        void emit(Row record);

        /** Activity never forwarded. */
        void skipped();

        /** Activity held now, moved by {@code delta}. */
        void held(long delta);
    }

    private final long bucketMs;
    private final Set<String> filteredTypes;
    private final Set<String> startTypes; // null: any event may start a silence
    private final long flushAfterMs; // 0: only the watermark releases a pending latest
    private final long bucketEndSpreadMs; // 1: every user's bucket ends at the same instant

    public ActivityFilter(
            long bucketMs,
            String[] filteredTypes,
            String[] startTypes,
            long flushAfterMs,
            long bucketEndSpreadMs) {
        if (bucketMs <= 0) {
            throw new IllegalArgumentException("bucketMs must be positive: " + bucketMs);
        }
        this.bucketMs = bucketMs;
        this.filteredTypes = new HashSet<>(Arrays.asList(filteredTypes));
        this.startTypes = startTypes == null ? null : new HashSet<>(Arrays.asList(startTypes));
        this.flushAfterMs = Math.max(0, flushAfterMs);
        this.bucketEndSpreadMs = Math.max(1, bucketEndSpreadMs);
    }

    /** The user's delay of bucket ends: CRC-32 of the UTF-8 user id, in [0, spreadMs). */
    public static long bucketEndDelay(String userId, long spreadMs) {
        CRC32 crc = new CRC32();
        crc.update(userId.getBytes(StandardCharsets.UTF_8));
        return Math.floorMod(crc.getValue(), spreadMs);
    }

    /** The next step of the processing-time grid strictly after {@code ms}. */
    public static long roundUp(long ms) {
        return ms - Math.floorMod(ms, TIMER_GRID_MS) + TIMER_GRID_MS;
    }

    public void processElement(Row record, Host host) throws Exception {
        Row payload = (Row) record.getField(1);
        long watermark = host.currentWatermark();
        if (!Boolean.TRUE.equals(payload.getField(DECODED))) {
            // Python decodes it; it may be a start of any type, at any time.
            host.emit(record);
            if (startTypes != null) {
                started(Long.MIN_VALUE, watermark, host);
            }
            return;
        }
        String type = (String) payload.getField(EVENT_TYPE);
        long ts = (Long) payload.getField(TS);
        if (filteredTypes.contains(type)) {
            host.emit(record);
            if (startTypes != null && ts >= watermark && startTypes.contains(type)) {
                started(ts, watermark, host);
            }
            return;
        }
        if (ts < watermark) {
            host.emit(record); // late: Python says so and counts it
            return;
        }
        if (startTypes != null) {
            Long start = host.earliestStart();
            if (start == null || ts < start) {
                holdBeforeStart(record, ts, host);
                return;
            }
        }
        arrive(record, ts, host);
    }

    /** An on-time start at {@code ts}: activity held from {@code ts} on is released. */
    private void started(long ts, long watermark, Host host) throws Exception {
        Long start = host.earliestStart();
        if (start != null && start <= ts) {
            return;
        }
        host.setEarliestStart(ts);
        long from = Math.max(ts, watermark); // held records below the watermark: not on time now
        for (Long bucket : keys(host)) {
            Row entry = host.bucket(bucket);
            Row first = (Row) entry.getField(PRE_FIRST);
            Row last = (Row) entry.getField(PRE_LAST);
            if (first == null || tsOf(latest(first, last)) < from) {
                continue;
            }
            boolean firstToo = tsOf(first) >= from;
            // What stays held: the earliest, if an earlier start may still release it.
            entry.setField(PRE_FIRST, firstToo ? null : first);
            entry.setField(PRE_LAST, null);
            host.putBucket(bucket, entry);
            if (firstToo) {
                host.held(-1);
                arrive(first, tsOf(first), host);
            }
            if (last != null) {
                host.held(-1);
                arrive(last, tsOf(last), host);
            }
        }
    }

    private void holdBeforeStart(Row record, long ts, Host host) throws Exception {
        long bucket = Math.floorDiv(ts, bucketMs);
        Row entry = entry(bucket, host);
        Row first = (Row) entry.getField(PRE_FIRST);
        Row last = (Row) entry.getField(PRE_LAST); // null while only one is held
        if (first == null) {
            entry.setField(PRE_FIRST, record);
        } else if (ts < tsOf(first)) {
            if (last == null) {
                entry.setField(PRE_LAST, first);
            } else {
                discard(host); // the old earliest is in between now
            }
            entry.setField(PRE_FIRST, record);
        } else if (ts > tsOf(latest(first, last))) {
            if (last != null) {
                discard(host);
            }
            entry.setField(PRE_LAST, record);
        } else {
            host.skipped();
            return;
        }
        host.held(1);
        host.putBucket(bucket, entry);
        host.registerEventTimeTimer(ts + 1); // dropped once the watermark passes it
    }

    /** An on-time activity record after the user's earliest start (or with no start filter). */
    private void arrive(Row record, long ts, Host host) throws Exception {
        long bucket = Math.floorDiv(ts, bucketMs);
        Row entry = entry(bucket, host);
        Long min = (Long) entry.getField(FWD_MIN);
        if (min == null || ts < min) {
            entry.setField(FWD_MIN, ts);
            if (min == null) {
                entry.setField(FWD_MAX, ts);
                // What was forwarded is kept until the bucket's end (its later records compare).
                long end = (bucket + 1) * bucketMs;
                String user = (String) record.getField(0);
                host.registerEventTimeTimer(end + bucketEndDelay(user, bucketEndSpreadMs));
            }
            host.putBucket(bucket, entry);
            host.emit(record);
            return;
        }
        Row pending = (Row) entry.getField(PENDING);
        if (ts <= (Long) entry.getField(FWD_MAX) || (pending != null && ts <= tsOf(pending))) {
            host.skipped();
            return;
        }
        if (pending != null) {
            discard(host);
        }
        host.held(1);
        entry.setField(PENDING, record);
        host.putBucket(bucket, entry);
        host.registerEventTimeTimer(ts + 1);
        if (flushAfterMs > 0) {
            // On a coarse grid: a busy user registers few distinct timers.
            host.registerProcessingTimeTimer(roundUp(host.currentProcessingTime() + flushAfterMs));
        }
    }

    private static Row entry(long bucket, Host host) throws Exception {
        Row entry = host.bucket(bucket);
        return entry != null ? entry : new Row(ENTRY_FIELDS);
    }

    /** A timer of this user at {@code timestamp}: event time, or processing time (the flush). */
    public void onTimer(long timestamp, boolean eventTime, Host host) throws Exception {
        for (Long bucket : keys(host)) {
            Row entry = host.bucket(bucket);
            Row pending = (Row) entry.getField(PENDING);
            // `release`: the entry changed.
            boolean release = pending != null && (!eventTime || tsOf(pending) < timestamp);
            if (release) {
                entry.setField(PENDING, null);
                entry.setField(FWD_MAX, tsOf(pending));
                host.held(-1);
                host.emit(pending);
            }
            Row first = (Row) entry.getField(PRE_FIRST);
            if (eventTime && first != null) {
                // The watermark passed these: no start at or before them can come on time now.
                Row last = (Row) entry.getField(PRE_LAST);
                if (tsOf(latest(first, last)) < timestamp) {
                    discard(host);
                    if (last != null) {
                        discard(host);
                    }
                    entry.setField(PRE_FIRST, null);
                    entry.setField(PRE_LAST, null);
                    release = true;
                } else if (tsOf(first) < timestamp) {
                    discard(host);
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
                host.removeBucket(bucket);
            } else if (release) {
                host.putBucket(bucket, entry);
            }
        }
    }

    /**
     * The user's buckets, copied (the loops over them change the map) and in time order, so that
     * what a start or a timer releases comes out in one order on every state backend.
     */
    private static List<Long> keys(Host host) throws Exception {
        List<Long> keys = new ArrayList<>();
        for (Long bucket : host.bucketKeys()) {
            keys.add(bucket);
        }
        Collections.sort(keys);
        return keys;
    }

    /** The later of a bucket's held records (PRE_LAST is null while only one is held). */
    private static Row latest(Row first, Row last) {
        return last != null ? last : first;
    }

    /** A held record that will never be forwarded. */
    private static void discard(Host host) {
        host.held(-1);
        host.skipped();
    }

    static long tsOf(Row record) {
        return (Long) ((Row) record.getField(1)).getField(TS);
    }
}
