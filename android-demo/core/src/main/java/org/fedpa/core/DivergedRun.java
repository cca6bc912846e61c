package org.fedpa.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Whether a round's local run diverged and must be discarded ({@code fedpa.schedule.diverged_run},
 * the same rule as the Python device): a step met a non-finite loss or gradient (the runtime
 * skipped it: the tensors had already left the region where SGD at this lr is stable), the mean
 * loss of the applied steps is not finite or above {@link #LOSS}, or a trained tensor is not finite.
 * Such tensors are garbage for the phone's own ranking and, as an upload, only noise the server
 * would average into every group member's state, so {@link FedPAClient} keeps what it had and
 * sends a zero change (still clipped and noised under LDP, and charged: skipping the upload would
 * reveal a data-dependent event the accountant does not cover).
 */
public final class DivergedRun {
    /**
     * A mean local loss (binary cross-entropy, nats) above this means the run diverged: its average
     * probability for the true label is below e^-10, far worse than a constant guess (ln 2 ~ 0.69).
     * Pinned to {@code fedpa.schedule.DIVERGED_LOSS} by {@code TrainingDefaultsTest}.
     */
    public static final double LOSS = 10.0;

    private DivergedRun() {
    }

    /** Why a fit's result must not be used, or null when it may ({@code tensors}: everything it trained). */
    public static String reason(Model.Fit fit, Map<String, Tensor> tensors) {
        return reason(fit.meanLoss, fit.skippedSteps, tensors);
    }

    /** Why a local run must not be used (mean loss of its applied steps, steps skipped, trained tensors), or null. */
    public static String reason(double meanLoss, int skippedSteps, Map<String, Tensor> tensors) {
        if (skippedSteps > 0) {
            return skippedSteps + " step(s) met a non-finite loss or gradient";
        }
        if (!(meanLoss <= LOSS)) { // NaN fails the comparison
            return String.format(Locale.ROOT, "mean local loss %.4g is not finite or above %s nats", meanLoss,
                    new java.math.BigDecimal(LOSS).stripTrailingZeros().toPlainString());
        }
        List<String> bad = new ArrayList<String>();
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            for (float v : e.getValue().data()) {
                if (Float.isNaN(v) || Float.isInfinite(v)) {
                    bad.add(e.getKey());
                    break;
                }
            }
        }
        if (!bad.isEmpty()) {
            Collections.sort(bad);
            return "trained tensor(s) " + bad.subList(0, Math.min(3, bad.size())) + " hold NaN or infinite values";
        }
        return null;
    }
}
