package dev.micromoments.flink;

import org.apache.flink.runtime.event.WatermarkEvent;
import org.apache.flink.streaming.api.graph.StreamConfig;
import org.apache.flink.streaming.api.operators.KeyedProcessOperator;
import org.apache.flink.streaming.api.operators.Output;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.LatencyMarker;
import org.apache.flink.streaming.runtime.streamrecord.RecordAttributes;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.runtime.tasks.StreamTask;
import org.apache.flink.streaming.runtime.watermarkstatus.WatermarkStatus;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;

/**
 * {@link ReleaseOnWatermark} as a keyed operator that tells it when each watermark arrives (a
 * KeyedProcessFunction sees the watermark only when it is called, possibly much later), before
 * the watermark fires its timers, and emits what those timers released, all users' at once, as
 * one record just before the watermark goes on (its output wraps the one Flink gives it). A
 * checkpoint barrier also emits what is pending first (timers interrupted by a checkpoint, when
 * Flink's interruptible timers are on: each user's release is whole in itself).
 */
public class ReleaseOperator extends KeyedProcessOperator<Row, Row, Row> {

    private static final long serialVersionUID = 1L;

    public ReleaseOperator(ReleaseOnWatermark function) {
        super(function);
    }

    private transient StepOutput stepOutput;

    private ReleaseOnWatermark release() {
        return (ReleaseOnWatermark) userFunction;
    }

    @Override
    protected void setup(
            StreamTask<?, ?> containingTask,
            StreamConfig config,
            Output<StreamRecord<Row>> output) {
        stepOutput = new StepOutput(output);
        super.setup(containingTask, config, stepOutput);
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        release().watermarkArrived(
                mark.getTimestamp(), getProcessingTimeService().getCurrentProcessingTime());
        super.processWatermark(mark);
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        stepOutput.emitStep(null);
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    /** Flink's output, with the released records emitted before each watermark. */
    private final class StepOutput implements Output<StreamRecord<Row>> {
        private final Output<StreamRecord<Row>> out;

        StepOutput(Output<StreamRecord<Row>> out) {
            this.out = out;
        }

        /** What the timers released, as one record (timestamped, unless null). */
        void emitStep(Long timestamp) {
            Row step = release().takeStep();
            if (step != null) {
                out.collect(
                        timestamp == null
                                ? new StreamRecord<>(step)
                                : new StreamRecord<>(step, timestamp));
            }
        }

        @Override
        public void emitWatermark(Watermark mark) {
            emitStep(mark.getTimestamp());
            out.emitWatermark(mark);
        }

        @Override
        public void emitWatermark(WatermarkEvent watermark) {
            out.emitWatermark(watermark);
        }

        @Override
        public void emitWatermarkStatus(WatermarkStatus watermarkStatus) {
            out.emitWatermarkStatus(watermarkStatus);
        }

        @Override
        public <X> void collect(OutputTag<X> outputTag, StreamRecord<X> record) {
            out.collect(outputTag, record);
        }

        @Override
        public void emitLatencyMarker(LatencyMarker latencyMarker) {
            out.emitLatencyMarker(latencyMarker);
        }

        @Override
        public void emitRecordAttributes(RecordAttributes recordAttributes) {
            out.emitRecordAttributes(recordAttributes);
        }

        @Override
        public void collect(StreamRecord<Row> record) {
            out.collect(record);
        }

        @Override
        public void close() {
            out.close();
        }
    }
}
