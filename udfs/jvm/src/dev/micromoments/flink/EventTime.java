package dev.micromoments.flink;

import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code moments_event_time(value BYTES)}: a record's {@code ts} as epoch milliseconds, for the
 * events table's rowtime (watermarks only: the Python operator reads ts on its own). An integer, or
 * an RFC 3339 date-time with a zone ({@code Z} or an offset; digits below the millisecond are
 * truncated toward the past, as the Python decoder does). NULL when there is none: the table falls
 * back to the Kafka record's timestamp.
 *
 * <p>Reads only up to {@code ts} with a streaming parser, instead of JSON_VALUE's whole-document
 * parse (twice per record, once for the watermark generator).
 */
public class EventTime extends ScalarFunction {

    private static final long MAX_MS = 253_402_300_799_999L; // 9999-12-31T23:59:59.999Z

    private transient JsonFactory factory;

    @Override
    public void open(FunctionContext context) {
        factory = new JsonFactory();
    }

    public Long eval(byte[] value) {
        if (value == null) {
            return null;
        }
        if (factory == null) {
            factory = new JsonFactory();
        }
        try (JsonParser parser = factory.createParser(value)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                return null;
            }
            while (parser.nextToken() == JsonToken.FIELD_NAME) {
                String name = parser.currentName();
                JsonToken token = parser.nextToken();
                if (!"ts".equals(name)) {
                    parser.skipChildren();
                    continue;
                }
                Long ms = null;
                if (token == JsonToken.VALUE_NUMBER_INT
                        && parser.getNumberType() != JsonParser.NumberType.BIG_INTEGER) {
                    ms = parser.getLongValue();
                } else if (token == JsonToken.VALUE_STRING) {
                    ms = parseDateTime(parser.getText());
                }
                // A SQL timestamp ends with the year 9999: past it, the Kafka timestamp.
                return ms != null && Math.abs(ms) <= MAX_MS ? ms : null;
            }
        } catch (Exception e) {
            return null;
        }
        return null;
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
