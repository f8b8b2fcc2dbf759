package dev.micromoments.flink;

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
 * The activity filter in front of the Python rule engine, as a keyed Flink operator: the rule is
 * {@link ActivityFilter} (stated, and tested record by record, in udfs/activity_filter.py); this
 * class keeps its state in keyed state, its timers in Flink's timer service. Input and output are
 * the keyed records of jobs/connectors/kafka_source.py: {@code Row(key, payload)}, the payload's
 * fields as jobs/connectors/payload.py names them.
 *
 * <p>Metrics: {@code skipped} (activity never forwarded), {@code held} (held now; a counter moved
 * both ways). Records in = forwarded + skipped + held.
 */
public class CollapseActivity extends KeyedProcessFunction<Row, Row, Row> {

    private static final long serialVersionUID = 1L;

    private final ActivityFilter filter;
    private final long stateTtlMs;
    private final TypeInformation<Row> recordType;

    private transient ValueState<Long> earliestStart;
    private transient MapState<Long, Row> buckets;
    private transient Counter skipped;
    private transient Counter held;
    private transient FlinkHost host;

    public CollapseActivity(
            long bucketMs,
            String[] filteredTypes,
            String[] startTypes,
            long flushAfterMs,
            long stateTtlMs,
            long bucketEndSpreadMs,
            TypeInformation<Row> recordType) {
        this.filter =
                new ActivityFilter(
                        bucketMs, filteredTypes, startTypes, flushAfterMs, bucketEndSpreadMs);
        this.stateTtlMs = stateTtlMs;
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
        host = new FlinkHost();
    }

    @Override
    public void processElement(Row record, Context ctx, Collector<Row> out) throws Exception {
        filter.processElement(record, host.at(ctx, out));
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        boolean eventTime = ctx.timeDomain() == TimeDomain.EVENT_TIME;
        filter.onTimer(timestamp, eventTime, host.at(ctx, out));
    }

    /** The current key's keyed state, timers, output and metrics (one instance, reused). */
    private final class FlinkHost implements ActivityFilter.Host {
        private Context ctx;
        private Collector<Row> out;

        FlinkHost at(Context context, Collector<Row> collector) {
            ctx = context;
            out = collector;
            return this;
        }

        @Override
        public long currentWatermark() {
            return ctx.timerService().currentWatermark();
        }

        @Override
        public long currentProcessingTime() {
            return ctx.timerService().currentProcessingTime();
        }

        @Override
        public Long earliestStart() throws Exception {
            return earliestStart.value();
        }

        @Override
        public void setEarliestStart(long ts) throws Exception {
            earliestStart.update(ts);
        }

        @Override
        public Row bucket(long bucket) throws Exception {
            return buckets.get(bucket);
        }

        @Override
        public void putBucket(long bucket, Row entry) throws Exception {
            buckets.put(bucket, entry);
        }

        @Override
        public void removeBucket(long bucket) throws Exception {
            buckets.remove(bucket);
        }

        @Override
        public Iterable<Long> bucketKeys() throws Exception {
            return buckets.keys();
        }

        @Override
        public void registerEventTimeTimer(long time) {
            ctx.timerService().registerEventTimeTimer(time);
        }

        @Override
        public void registerProcessingTimeTimer(long time) {
            ctx.timerService().registerProcessingTimeTimer(time);
        }

        @Override
        public void emit(Row record) {
            out.collect(record);
        }

        @Override
        public void skipped() {
            skipped.inc();
        }

        @Override
        public void held(long delta) {
            held.inc(delta);
        }
    }
}
