import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import dev.micromoments.flink.ReleaseOnWatermark;
import org.apache.flink.types.Row;

/**
 * Packs records as the release operator's {@code batch} field: one record per input line, tab
 * separated fields {@code user_id, ts, event_id, event_type, device, properties, raw}, each but
 * ts hex-encoded (UTF-8) or {@code -} for null, grouped by user in the order users first appear
 * (the first user's last record is the carrier, left out); prints the packed JSON on one line.
 */
public class ReleasePackHarness {
    public static void main(String[] args) throws Exception {
        BufferedReader in =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        Map<String, List<Row>> users = new LinkedHashMap<>();
        String line;
        while ((line = in.readLine()) != null) {
            String[] f = line.split("\t", -1);
            Row payload = new Row(13);
            String user = text(f[0]);
            payload.setField(0, user);
            payload.setField(1, HexFormat.of().parseHex(f[6]));
            payload.setField(5, true);
            payload.setField(6, text(f[2]));
            payload.setField(7, text(f[3]));
            payload.setField(8, Long.parseLong(f[1]));
            payload.setField(9, text(f[4]));
            payload.setField(10, text(f[5]));
            users.computeIfAbsent(user, u -> new ArrayList<>()).add(Row.of(user, payload));
        }
        System.out.println(ReleaseOnWatermark.packStep(new ArrayList<>(users.values())));
    }

    private static String text(String hex) {
        return hex.equals("-") ? null : new String(HexFormat.of().parseHex(hex), StandardCharsets.UTF_8);
    }
}
