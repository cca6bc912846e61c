package org.fedpa.core;

import java.util.Collection;

/**
 * The non-finite step guard every {@link ModelRuntime} applies before an SGD update: a batch
 * whose loss or gradient overflowed is dropped rather than written into the adapters, which
 * would otherwise stay NaN for good (the Python client and the simulation harness drop such
 * steps the same way).
 */
public final class StepGuard {
    private StepGuard() {
    }

    /** True when the loss and every gradient value are finite. */
    public static boolean finite(float loss, Collection<float[]> gradients) {
        if (Float.isNaN(loss) || Float.isInfinite(loss)) {
            return false;
        }
        for (float[] g : gradients) {
            for (float v : g) {
                if (Float.isNaN(v) || Float.isInfinite(v)) {
                    return false;
                }
            }
        }
        return true;
    }
}
