import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeSet;

import dev.micromoments.flink.ActivityFilter;
import org.apache.flink.types.Row;

/**
 * Drives {@link ActivityFilter} without a cluster, with Flink's timer service as the Python
 * model (udfs/activity_filter.py) has it: timers fire in (time, user) order, event-time ones
 * before the watermark that reached them goes on. Reads one command per line on stdin, writes
 * what the filter does on stdout (tests/integration/test_activity_filter_jvm.py).
 */
public final class ActivityFilterHarness {

    private static final class User {
        Long earliestStart;
        final Map<Long, Row> buckets = new HashMap<>();
    }

    private record Timer(long at, String user) implements Comparable<Timer> {
        @Override
        public int compareTo(Timer other) {
            int byTime = Long.compare(at, other.at);
            return byTime != 0 ? byTime : user.compareTo(other.user);
        }
    }

    private final PrintWriter out;
    private ActivityFilter filter;
    private Map<String, User> users;
    private TreeSet<Timer> eventTimers;
    private TreeSet<Timer> processingTimers;
    private long watermark;
    private long now;
    private long skipped;
    private long held;
    private String key;

    private ActivityFilterHarness(PrintWriter out) {
        this.out = out;
    }

    private final ActivityFilter.Host host =
            new ActivityFilter.Host() {
                @Override
                public long currentWatermark() {
                    return watermark;
                }

                @Override
                public long currentProcessingTime() {
                    return now;
                }

                @Override
                public Long earliestStart() {
                    return users.get(key).earliestStart;
                }

                @Override
                public void setEarliestStart(long ts) {
                    users.get(key).earliestStart = ts;
                }

                @Override
                public Row bucket(long bucket) {
                    return users.get(key).buckets.get(bucket);
                }

                @Override
                public void putBucket(long bucket, Row entry) {
                    users.get(key).buckets.put(bucket, entry);
                }

                @Override
                public void removeBucket(long bucket) {
                    users.get(key).buckets.remove(bucket);
                }

                @Override
                public Iterable<Long> bucketKeys() {
                    return users.get(key).buckets.keySet();
                }

                @Override
                public void registerEventTimeTimer(long time) {
                    out.println("timer\tevent\t" + key + "\t" + time);
                    eventTimers.add(new Timer(time, key));
                }

                @Override
                public void registerProcessingTimeTimer(long time) {
                    out.println("timer\tprocessing\t" + key + "\t" + time);
                    processingTimers.add(new Timer(time, key));
                }

                @Override
                public void emit(Row record) {
                    out.println("record\t" + ((Row) record.getField(1)).getField(6));
                }

                @Override
                public void skipped() {
                    skipped++;
                }

                @Override
                public void held(long delta) {
                    held += delta;
                }
            };

    private static String[] list(String field) {
        return field.isEmpty() ? new String[0] : field.split(",", -1);
    }

    private void run(String[] command) throws Exception {
        switch (command[0]) {
            case "filter" -> {
                // filter <bucket ms> <filtered types> <start types, or *> <flush after> <spread>
                String[] starts = command[3].equals("*") ? null : list(command[3]);
                filter =
                        new ActivityFilter(
                                Long.parseLong(command[1]),
                                list(command[2]),
                                starts,
                                Long.parseLong(command[4]),
                                Long.parseLong(command[5]));
                users = new HashMap<>();
                eventTimers = new TreeSet<>();
                processingTimers = new TreeSet<>();
                watermark = Long.MIN_VALUE;
                now = skipped = held = 0;
            }
            case "record" -> {
                // record <user> <decoded 1|0> <type> <ts> <event id>
                key = command[1];
                users.computeIfAbsent(key, k -> new User());
                Row payload = new Row(11);
                payload.setField(0, key);
                payload.setField(5, command[2].equals("1"));
                payload.setField(6, command[5]);
                if (command[2].equals("1")) {
                    payload.setField(7, command[3]);
                    payload.setField(8, Long.parseLong(command[4]));
                }
                filter.processElement(Row.of(key, payload), host);
            }
            case "watermark" -> {
                long time = Long.parseLong(command[1]);
                if (time > watermark) {
                    watermark = time;
                    fire(eventTimers, time, true);
                    out.println("watermark\t" + time);
                }
            }
            case "time" -> {
                now = Math.max(now, Long.parseLong(command[1]));
                fire(processingTimers, now, false);
            }
            case "end" -> {
                out.println("end\t" + skipped + "\t" + held);
                out.flush();
            }
            default -> throw new IllegalArgumentException("unknown command: " + command[0]);
        }
    }

    private void fire(TreeSet<Timer> timers, long until, boolean eventTime) throws Exception {
        while (!timers.isEmpty() && timers.first().at() <= until) {
            Timer timer = timers.pollFirst();
            key = timer.user();
            filter.onTimer(timer.at(), eventTime, host);
        }
    }

    public static void main(String[] args) throws Exception {
        BufferedReader in =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintWriter out =
                new PrintWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8), false);
        ActivityFilterHarness harness = new ActivityFilterHarness(out);
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            harness.run(line.split("\t", -1));
        }
        out.flush();
    }
}
