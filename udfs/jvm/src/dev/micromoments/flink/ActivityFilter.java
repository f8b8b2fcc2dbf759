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
 * their timestamp, and only while one of the user's silences is armed. The filter keeps per user
 * the times at which one may be armed: intervals [t, t + armedMs] (the largest gap) from each
 * event of a start type, widened by each on-time event inside one; an undecoded record (it may be
 * a start of any type, at any time) arms all time. Of the activity inside them the Python engine
 * needs, per bucket of {@code bucketMs} (the smallest silence gap), the earliest and the latest.
 *
 * <ul>
 *   <li>Outside the intervals: the bucket's earliest and latest are held; intervals that come to
 *       cover one release it (it widens them in turn); the watermark passing one drops it (no
 *       start can arm a silence at it on time any more), so they are held for about the
 *       out-of-orderness bound only.
 *   <li>Inside: the record widens its interval, and a bucket's first activity, and any earlier
 *       than what was forwarded, goes at once. A later one is held as the bucket's pending latest
 *       (replacing an earlier pending one) until the watermark is about to pass it (an event-time
 *       timer at ts + 1 emits it just before the watermark goes downstream, so Python still sees
 *       it on time), or {@code flushAfterMs} of wall-clock time passed (so an idle input never
 *       strands it: Python's idle forcing waits longer).
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
    static final int PRE_FIRST = 3; // held outside the armed intervals
    static final int PRE_LAST = 4; // null while only one is held
    static final int ENTRY_FIELDS = 5;
    // (Fields are compared by value, never by identity: the heap backend copies state values
    // while a checkpoint runs, so two fields holding one record may become two records.)

    /** One user's state, timers, output and metrics, as the host keeps them. */
    public interface Host {
        long currentWatermark();

        long currentProcessingTime();

        /** The user's armed intervals, flat and sorted: low, high, low, high... (null: none). */
        long[] armed() throws Exception;

        /** Null or empty: none. */
        void setArmed(long[] intervals) throws Exception;

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
    private final long armedMs; // the largest silence gap

    public ActivityFilter(
            long bucketMs,
            String[] filteredTypes,
            String[] startTypes,
            long flushAfterMs,
            long bucketEndSpreadMs,
            long armedMs) {
        if (bucketMs <= 0) {
            throw new IllegalArgumentException("bucketMs must be positive: " + bucketMs);
        }
        this.bucketMs = bucketMs;
        this.filteredTypes = new HashSet<>(Arrays.asList(filteredTypes));
        this.startTypes = startTypes == null ? null : new HashSet<>(Arrays.asList(startTypes));
        this.flushAfterMs = Math.max(0, flushAfterMs);
        this.bucketEndSpreadMs = Math.max(1, bucketEndSpreadMs);
        this.armedMs = armedMs;
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
        long[] armed = startTypes == null ? null : forgetPassed(host, watermark);
        if (!Boolean.TRUE.equals(payload.getField(DECODED))) {
            // Python decodes it; it may be a start of any type, at any time.
            host.emit(record);
            if (startTypes != null) {
                arm(armed, Long.MIN_VALUE, Long.MAX_VALUE, host);
            }
            return;
        }
        String type = (String) payload.getField(EVENT_TYPE);
        long ts = (Long) payload.getField(TS);
        if (filteredTypes.contains(type)) {
            host.emit(record);
            if (startTypes != null
                    && ts >= watermark
                    && (startTypes.contains(type) || covered(armed, ts))) {
                arm(armed, ts, ts + armedMs, host);
            }
            return;
        }
        if (ts < watermark) {
            host.emit(record); // late: Python says so and counts it
            return;
        }
        if (startTypes != null) {
            if (!covered(armed, ts)) {
                holdUnarmed(record, ts, host);
                return;
            }
            arm(armed, ts, ts + armedMs, host);
        }
        arrive(record, ts, host);
    }

    /**
     * [low, high] joins the user's intervals; held activity they cover now is released (widening
     * them in turn), in bucket order.
     */
    private void arm(long[] armed, long low, long high, Host host) throws Exception {
        long[] current = merge(armed, low, high);
        if (current == null) {
            return;
        }
        long watermark = host.currentWatermark(); // held records below it: not on time now
        for (Long bucket : keys(host)) {
            Row entry = host.bucket(bucket);
            Row first = (Row) entry.getField(PRE_FIRST);
            if (first == null) {
                continue;
            }
            Row last = (Row) entry.getField(PRE_LAST);
            boolean firstGoes = tsOf(first) >= watermark && covered(current, tsOf(first));
            if (firstGoes) { // it widens the intervals: the latest is covered now (bucket <= gap)
                current = widen(current, tsOf(first));
            }
            boolean lastGoes =
                    last != null && tsOf(last) >= watermark && covered(current, tsOf(last));
            if (!firstGoes && !lastGoes) {
                continue;
            }
            // What stays held: the earliest, if a start before it may still release it.
            if (firstGoes) {
                entry.setField(PRE_FIRST, lastGoes ? null : last);
            }
            entry.setField(PRE_LAST, null);
            host.putBucket(bucket, entry);
            if (firstGoes) {
                host.held(-1);
                arrive(first, tsOf(first), host);
            }
            if (lastGoes) {
                current = widen(current, tsOf(last));
                host.held(-1);
                arrive(last, tsOf(last), host);
            }
        }
        host.setArmed(current);
    }

    private long[] widen(long[] armed, long ts) {
        long[] merged = merge(armed, ts, ts + armedMs);
        return merged == null ? armed : merged;
    }

    /** The user's intervals without those the watermark passed (they cover nothing on time). */
    private static long[] forgetPassed(Host host, long watermark) throws Exception {
        long[] armed = host.armed();
        if (armed == null || armed[1] >= watermark) {
            return armed;
        }
        int from = 0;
        while (from < armed.length && armed[from + 1] < watermark) {
            from += 2;
        }
        long[] kept = from == armed.length ? null : Arrays.copyOfRange(armed, from, armed.length);
        host.setArmed(kept);
        return kept;
    }

    static boolean covered(long[] armed, long ts) {
        if (armed != null) {
            for (int i = 0; i < armed.length; i += 2) {
                if (armed[i] <= ts && ts <= armed[i + 1]) {
                    return true;
                }
            }
        }
        return false;
    }

    /** The intervals with [low, high] joined, sorted and disjoint; null if it adds nothing. */
    static long[] merge(long[] armed, long low, long high) {
        int n = armed == null ? 0 : armed.length;
        for (int i = 0; i < n; i += 2) {
            if (armed[i] <= low && high <= armed[i + 1]) {
                return null;
            }
        }
        long[][] all = new long[n / 2 + 1][];
        for (int i = 0; i < n; i += 2) {
            all[i / 2] = new long[] {armed[i], armed[i + 1]};
        }
        all[n / 2] = new long[] {low, high};
        Arrays.sort(
                all,
                (a, b) -> a[0] != b[0] ? Long.compare(a[0], b[0]) : Long.compare(a[1], b[1]));
        long[] out = new long[all.length * 2];
        int size = 0;
        for (long[] interval : all) {
            if (size > 0 && interval[0] <= out[size - 1]) {
                out[size - 1] = Math.max(out[size - 1], interval[1]);
            } else {
                out[size++] = interval[0];
                out[size++] = interval[1];
            }
        }
        return Arrays.copyOf(out, size);
    }

    private void holdUnarmed(Row record, long ts, Host host) throws Exception {
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

    /** An on-time activity record inside an armed interval (or with no start filter). */
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
        if (eventTime) {
            forgetPassed(host, timestamp);
        }
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
                // The watermark passed these: no start can arm a silence at them on time now.
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
