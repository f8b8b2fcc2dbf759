package dev.micromoments.flink;

import org.apache.flink.streaming.api.operators.KeyedProcessOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.types.Row;

/**
 * {@link ReleaseOnWatermark} as a keyed operator that also tells it when each watermark arrives
 * (a KeyedProcessFunction sees the watermark only when it is called, possibly much later), before
 * the watermark fires its timers and goes on.
 */
public class ReleaseOperator extends KeyedProcessOperator<Row, Row, Row> {

    private static final long serialVersionUID = 1L;

    public ReleaseOperator(ReleaseOnWatermark function) {
        super(function);
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        ((ReleaseOnWatermark) userFunction)
                .watermarkArrived(
                        mark.getTimestamp(), getProcessingTimeService().getCurrentProcessingTime());
        super.processWatermark(mark);
    }
}
