package dev.micromoments.flink;

import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code moments_event_time(value BYTES, max_future_ms BIGINT)}: a record's event time in epoch
 * milliseconds, for the events table's rowtime (watermarks only: the Python operator reads ts on
 * its own). It is the record's {@code ts} (an integer, or an RFC 3339 date-time with a zone whose
 * digits below the millisecond are truncated toward the past, as the Python decoder does) when the
 * record is valid by the contract and its guard rails as far as {@link EventReader} can tell;
 * any other record (invalid, poisoned, or one only Python can judge) gets 0, the epoch: no valid
 * ts is below it, so it is never a partition's maximum and never moves its watermark.
 *
 * <p>Never NULL (a NULL rowtime fails the job), and always a SQL timestamp (year 0 to 9999).
 */
public class EventTime extends ScalarFunction {

    private transient JsonFactory factory;
    private transient EventReader reader;

    @Override
    public void open(FunctionContext context) {
        factory = new JsonFactory();
        reader = new EventReader();
    }

    @Override
    public boolean isDeterministic() {
        return false; // wall-clock now decides the future bound
    }

    public long eval(byte[] value, Long maxFutureMs) {
        if (factory == null) {
            open(null);
        }
        EventReader r = reader;
        r.read(factory, value, maxFutureMs, System.currentTimeMillis());
        return r.valid ? r.ts : 0L;
    }

    static Long parseDateTime(String text) {
        String t = text.trim();
        if (t.length() > 10 && (t.charAt(10) == ' ' || t.charAt(10) == 't')) {
            t = t.substring(0, 10) + 'T' + t.substring(11);
        }
        if (t.endsWith("z")) {
            t = t.substring(0, t.length() - 1) + 'Z';
        }
        try {
            java.time.Instant instant = OffsetDateTime.parse(t).toInstant();
            // Nanoseconds are never negative, so this is the floor, before 1970 too.
            return Math.addExact(
                    Math.multiplyExact(instant.getEpochSecond(), 1000L), instant.getNano() / 1_000_000L);
        } catch (DateTimeParseException | ArithmeticException e) {
            return null;
        }
    }
}
