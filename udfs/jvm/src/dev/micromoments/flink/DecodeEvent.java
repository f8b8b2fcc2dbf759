package dev.micromoments.flink;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;

/**
 * {@code moments_decode(value BYTES)}: one pass over a raw Kafka record, in the JVM, so the Python
 * operator gets fields instead of JSON to parse (Flink's JSON_VALUE/JSON_QUERY parse the whole
 * record once per call).
 *
 * <p>Returns {@code ROW(user_id, decoded, event_id, event_type, ts, device, properties)}. {@code
 * decoded} is true only when the record is certainly a valid event by the event contract as the
 * Python decoder (schemas/event.py) reads it, and every field here is what that decoder would
 * make of it: a UTF-8 JSON object; event_id, user_id, event_type non-empty strings; ts an integer
 * in the 64-bit range; device and session_id absent, null or strings; properties absent, null or
 * an object (returned as its exact text from the record, for Python's json.loads). Anything else
 * (RFC 3339 ts, 5.0, duplicate contract fields, escaped lone surrogates, invalid JSON) gets
 * {@code decoded = false} and Python decides, so this never changes a verdict. {@code user_id}
 * is set whenever the record has it as a string (the stream is keyed on it), else ''.
 *
 * <p>Not deterministic on purpose: the planner would otherwise inline one call per field read.
 */
public class DecodeEvent extends ScalarFunction {

    private static final int USER_ID = 1, EVENT_ID = 2, EVENT_TYPE = 4, TS = 8;
    private static final int DEVICE = 16, SESSION_ID = 32, PROPERTIES = 64;
    private static final int REQUIRED = USER_ID | EVENT_ID | EVENT_TYPE | TS;

    private transient JsonFactory factory;

    @Override
    public void open(FunctionContext context) {
        factory = new JsonFactory();
    }

    @Override
    public boolean isDeterministic() {
        return false;
    }

    @DataTypeHint(
            "ROW<user_id STRING, decoded BOOLEAN, event_id STRING, event_type STRING, ts BIGINT, "
                    + "device STRING, properties STRING>")
    public Row eval(byte[] value) {
        if (factory == null) {
            factory = new JsonFactory();
        }
        String userId = null, eventId = null, eventType = null, device = null, properties = null;
        long ts = 0;
        int seen = 0;
        boolean certain = value != null && startsAnObject(value) && validUtf8(value)
                && !hasEscapedSurrogate(value);
        if (value == null) {
            return Row.of("", false, null, null, null, null, null);
        }
        try (JsonParser parser = factory.createParser(value)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                return Row.of("", false, null, null, null, null, null);
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
                        certain &= nonEmptyString(v, userId);
                        break;
                    case EVENT_ID:
                        eventId = v == JsonToken.VALUE_STRING ? parser.getText() : null;
                        certain &= nonEmptyString(v, eventId);
                        break;
                    case EVENT_TYPE:
                        eventType = v == JsonToken.VALUE_STRING ? parser.getText() : null;
                        certain &= nonEmptyString(v, eventType);
                        break;
                    case TS:
                        if (v == JsonToken.VALUE_NUMBER_INT
                                && parser.getNumberType() != JsonParser.NumberType.BIG_INTEGER) {
                            ts = parser.getLongValue();
                        } else {
                            certain = false;
                            parser.skipChildren();
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
        certain &= (seen & REQUIRED) == REQUIRED;
        String key = userId == null ? "" : userId;
        if (!certain) {
            return Row.of(key, false, null, null, null, null, null);
        }
        return Row.of(key, true, eventId, eventType, ts, device, properties);
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

    private static boolean nonEmptyString(JsonToken token, String text) {
        return token == JsonToken.VALUE_STRING && text != null && !text.isEmpty();
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
