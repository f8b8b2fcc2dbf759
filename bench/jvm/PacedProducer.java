import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The live benchmark's event source: sends each record of a prepared file when the wall clock
 * reaches its send time, as devices would, and reports how far behind its schedule it fell.
 *
 * <p>Run with the single-file source launcher and the broker's jars on the class path
 * (bench/harness.py does): {@code java -cp '.cache/jars/kafka/*' PacedProducer.java BOOTSTRAP
 * TOPIC FILE}. Each line of FILE is {@code send_at_ms TAB key TAB value}, in send order. It is
 * Java, not Python, so that at 5k events/s it stays on schedule on a 2-core machine shared with
 * the job under test (a Python producer there left pauses of up to 420 ms, and the watermark
 * waits for every pause). Prints one JSON line: records sent, and how late sends were against
 * their schedule (max, and how many more than 5 ms and 50 ms late).
 */
public final class PacedProducer {
    private record Scheduled(long at, byte[] key, byte[] value) {}

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: PacedProducer BOOTSTRAP TOPIC FILE");
            System.exit(2);
        }
        List<Scheduled> records = new ArrayList<>();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(
                new FileInputStream(args[2]), StandardCharsets.UTF_8), 1 << 20)) {
            String line;
            while ((line = in.readLine()) != null) {
                int first = line.indexOf('\t');
                int second = line.indexOf('\t', first + 1);
                if (first < 0 || second < 0) {
                    throw new IllegalArgumentException("not send_at TAB key TAB value: " + line);
                }
                records.add(new Scheduled(
                        Long.parseLong(line.substring(0, first)),
                        line.substring(first + 1, second).getBytes(StandardCharsets.UTF_8),
                        line.substring(second + 1).getBytes(StandardCharsets.UTF_8)));
            }
        }

        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        config.put(ProducerConfig.ACKS_CONFIG, "1");
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        config.put(ProducerConfig.LINGER_MS_CONFIG, "1");
        config.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "1");
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        AtomicReference<Exception> failed = new AtomicReference<>();
        AtomicLong acked = new AtomicLong();
        long maxLate = 0;
        long late5 = 0;
        long late50 = 0;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(config)) {
            producer.partitionsFor(args[1]); // metadata before the first scheduled send
            for (Scheduled record : records) {
                long wait;
                while ((wait = record.at - System.currentTimeMillis()) > 0) {
                    LockSupport.parkNanos(wait * 1_000_000L);
                }
                long late = -wait;
                maxLate = Math.max(maxLate, late);
                late5 += late > 5 ? 1 : 0;
                late50 += late > 50 ? 1 : 0;
                producer.send(new ProducerRecord<>(args[1], record.key, record.value), (meta, error) -> {
                    if (error != null) {
                        failed.compareAndSet(null, error);
                    } else {
                        acked.incrementAndGet();
                    }
                });
                if (failed.get() != null) {
                    break;
                }
            }
            producer.flush();
        }
        if (failed.get() != null) {
            System.err.println("PacedProducer: send failed: " + failed.get());
            System.exit(1);
        }
        System.out.printf(
                "{\"sent\": %d, \"max_late_ms\": %d, \"late_over_5ms\": %d, \"late_over_50ms\": %d}%n",
                acked.get(), maxLate, late5, late50);
    }
}
