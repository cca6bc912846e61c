package org.fedpa.core;

/** Local SGD settings; the defaults are the Python edge client's ({@code fedpa.schedule.LocalTraining}). */
public final class TrainingConfig {
    public final int epochs;
    public final int batchSize;
    public final float lr;

    public TrainingConfig(int epochs, int batchSize, float lr) {
        if (epochs < 1 || batchSize < 1 || !(lr > 0)) {
            throw new IllegalArgumentException("need epochs >= 1, batch_size >= 1, lr > 0; got " + epochs + ", "
                    + batchSize + ", " + lr);
        }
        this.epochs = epochs;
        this.batchSize = batchSize;
        this.lr = lr;
    }

    public static TrainingConfig defaults() {
        return new TrainingConfig(5, 32, 1.0f);
    }
}
