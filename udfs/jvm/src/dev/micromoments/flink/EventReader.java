package dev.micromoments.flink;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;

/**
 * One pass over a raw record by the event contract and its guard rails (udfs/decode.py), shared
 * by {@link DecodeEvent} and {@link EventTime} so both judge a record alike.
 *
 * <p>After {@link #read}, {@code valid} is true only when the record is certainly valid as the
 * Python decoder reads it, except that ts may also be an RFC 3339 string ({@code tsIsString}):
 * a UTF-8 JSON object of at most 1 MiB; event_id, user_id, event_type strings of 1..512 bytes of
 * UTF-8; ts in [0, now + maxFuture] and not past the year 9999; device and session_id absent,
 * null or strings; properties absent, null or an object. Anything it cannot judge exactly
 * (duplicate contract fields, a byte-order mark, escaped lone surrogates, ts 5.0) is not valid
 * here; Python decides those.
 */
final class EventReader {

    static final int MAX_RECORD_BYTES = 1 << 20;
    static final int MAX_ID_BYTES = 512;
    static final long MAX_TS_MS = 253_402_300_799_999L; // 9999-12-31T23:59:59.999Z

    private static final int USER_ID = 1, EVENT_ID = 2, EVENT_TYPE = 4, TS = 8;
    private static final int DEVICE = 16, SESSION_ID = 32, PROPERTIES = 64;
    private static final int REQUIRED = USER_ID | EVENT_ID | EVENT_TYPE | TS;

    String userId, eventId, eventType, device, properties;
    long ts;
    boolean tsIsString;
    boolean valid;

    /**
     * Reads {@code value}; {@code maxFutureMs} null or negative lifts the future bound ({@code
     * --max-future off}), {@code nowMs} is wall-clock time.
     */
    void read(JsonFactory factory, byte[] value, Long maxFutureMs, long nowMs) {
        userId = eventId = eventType = device = properties = null;
        ts = 0;
        tsIsString = false;
        valid = false;
        if (value == null || value.length > MAX_RECORD_BYTES) {
            return; // an oversized record is not even parsed: Python gives the reason
        }
        boolean certain = startsAnObject(value) && validUtf8(value) && !hasEscapedSurrogate(value);
        boolean tsRead = false;
        int seen = 0;
        try (JsonParser parser = factory.createParser(value)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                return;
            }
            JsonToken token;
            while ((token = parser.nextToken()) == JsonToken.FIELD_NAME) {
                String name = parser.currentName();
                JsonToken v = parser.nextToken();
                int field = fieldBit(name);
                if (field != 0) {
                    if ((seen & field) != 0) {
                        certain = false; // which of the two the decoder keeps is not ours to guess
                    }
                    seen |= field;
                }
                switch (field) {
                    case USER_ID:
                        if (v == JsonToken.VALUE_STRING) {
                            userId = parser.getText();
                        }
                        certain &= idWithinLimits(v, userId);
                        break;
                    case EVENT_ID:
                        eventId = v == JsonToken.VALUE_STRING ? parser.getText() : null;
                        certain &= idWithinLimits(v, eventId);
                        break;
                    case EVENT_TYPE:
                        eventType = v == JsonToken.VALUE_STRING ? parser.getText() : null;
                        certain &= idWithinLimits(v, eventType);
                        break;
                    case TS:
                        Long ms = null;
                        if (v == JsonToken.VALUE_NUMBER_INT
                                && parser.getNumberType() != JsonParser.NumberType.BIG_INTEGER) {
                            ms = parser.getLongValue();
                        } else if (v == JsonToken.VALUE_STRING) {
                            ms = EventTime.parseDateTime(parser.getText());
                            tsIsString = true;
                        } else {
                            parser.skipChildren();
                        }
                        if (ms == null) {
                            certain = false;
                        } else {
                            ts = ms;
                            tsRead = true;
                        }
                        break;
                    case DEVICE:
                        device = v == JsonToken.VALUE_STRING ? parser.getText() : null;
                        certain &= v == JsonToken.VALUE_STRING || v == JsonToken.VALUE_NULL;
                        parser.skipChildren();
                        break;
                    case SESSION_ID:
                        certain &= v == JsonToken.VALUE_STRING || v == JsonToken.VALUE_NULL;
                        parser.skipChildren();
                        break;
                    case PROPERTIES:
                        if (v == JsonToken.START_OBJECT) {
                            long start = parser.currentTokenLocation().getByteOffset();
                            parser.skipChildren();
                            long end = parser.currentLocation().getByteOffset();
                            properties = new String(
                                    value, (int) start, (int) (end - start), StandardCharsets.UTF_8);
                        } else {
                            properties = null;
                            certain &= v == JsonToken.VALUE_NULL;
                            parser.skipChildren();
                        }
                        break;
                    default:
                        parser.skipChildren();
                }
            }
            certain &= token == JsonToken.END_OBJECT && parser.nextToken() == null;
        } catch (Exception e) {
            // Not JSON (or not all of it): Python's decoder gives the reason.
            certain = false;
        }
        certain &= (seen & REQUIRED) == REQUIRED && tsRead && tsWithinLimits(ts, maxFutureMs, nowMs);
        valid = certain;
    }

    /** ts in [0, now + maxFuture] (no upper bound but the year 9999 when maxFuture is off). */
    static boolean tsWithinLimits(long ts, Long maxFutureMs, long nowMs) {
        if (ts < 0 || ts > MAX_TS_MS) {
            return false;
        }
        return maxFutureMs == null || maxFutureMs < 0 || ts - nowMs <= maxFutureMs;
    }

    private static int fieldBit(String name) {
        switch (name) {
            case "user_id": return USER_ID;
            case "event_id": return EVENT_ID;
            case "event_type": return EVENT_TYPE;
            case "ts": return TS;
            case "device": return DEVICE;
            case "session_id": return SESSION_ID;
            case "properties": return PROPERTIES;
            default: return 0;
        }
    }

    /** A string of 1..512 bytes of UTF-8 (lone surrogates never get here: see read). */
    private static boolean idWithinLimits(JsonToken token, String text) {
        if (token != JsonToken.VALUE_STRING || text == null || text.isEmpty()) {
            return false;
        }
        if (text.length() * 3 <= MAX_ID_BYTES) {
            return true; // at most 3 bytes per UTF-16 unit (a surrogate pair is 4 for 2 units)
        }
        return utf8Length(text) <= MAX_ID_BYTES;
    }

    static int utf8Length(String text) {
        int bytes = 0;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c < 0x80) {
                bytes += 1;
            } else if (c < 0x800) {
                bytes += 2;
            } else if (Character.isHighSurrogate(c) && i + 1 < text.length()
                    && Character.isLowSurrogate(text.charAt(i + 1))) {
                bytes += 4;
                i++;
            } else {
                bytes += 3;
            }
        }
        return bytes;
    }

    /** The first non-whitespace byte is '{' (no byte-order mark, no UTF-16/32). */
    private static boolean startsAnObject(byte[] value) {
        for (byte b : value) {
            if (b == ' ' || b == '\t' || b == '\n' || b == '\r') {
                continue;
            }
            return b == '{';
        }
        return false;
    }

    private static boolean validUtf8(byte[] value) {
        for (byte b : value) {
            if (b < 0) {
                try {
                    StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(value));
                    return true;
                } catch (CharacterCodingException e) {
                    return false;
                }
            }
        }
        return true; // ASCII
    }

    /** A \\uD800-\\uDFFF escape: Python and the JVM may disagree on a lone surrogate. */
    private static boolean hasEscapedSurrogate(byte[] value) {
        for (int i = 0; i + 3 < value.length; i++) {
            if (value[i] == '\\' && value[i + 1] == 'u' && (value[i + 2] == 'd' || value[i + 2] == 'D')) {
                byte c = value[i + 3];
                if ((c >= '8' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
                    return true;
                }
            }
        }
        return false;
    }
}
