package org.fedpa.core;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

/**
 * Local differential privacy before upload (docs/design.md §4, {@code fedpa.privacy.clip_and_noise}): the
 * whole update, all tensors as one vector, is clipped to L2 norm C (L1 for Laplace), then every
 * coordinate gets independent noise of scale sigma·C. Seeded through the {@link Random} passed in.
 */
public final class Ldp {
    private Ldp() {
    }

    /** What clipping did (for the UI and the tests). */
    public static final class Report {
        public final double normBefore;
        public final double normAfterClip;
        public final boolean clipped;

        Report(double normBefore, double normAfterClip, boolean clipped) {
            this.normBefore = normBefore;
            this.normAfterClip = normAfterClip;
            this.clipped = clipped;
        }
    }

    /** The noised update (new tensors; the input is not modified) and the clip report. */
    public static final class Result {
        public final Map<String, Tensor> update;
        public final Report report;

        Result(Map<String, Tensor> update, Report report) {
            this.update = update;
            this.report = report;
        }
    }

    /**
     * Usage: {@code Ldp.clipAndNoise(deltas, privacy, new Random(seed))}. A {@code "none"} mechanism
     * clips only.
     */
    public static Result clipAndNoise(Map<String, Tensor> update, Privacy privacy, Random rng) {
        boolean laplace = "laplace".equals(privacy.mechanism);
        double norm = 0;
        for (Tensor t : update.values()) {
            for (float v : t.data()) {
                norm += laplace ? Math.abs(v) : (double) v * v;
            }
        }
        norm = laplace ? norm : Math.sqrt(norm);
        double factor = norm > 0 ? Math.min(1.0, privacy.clipNorm / norm) : 1.0;
        double scale = privacy.noiseMultiplier * privacy.clipNorm;
        Map<String, Tensor> out = new LinkedHashMap<String, Tensor>();
        for (Map.Entry<String, Tensor> e : update.entrySet()) {
            float[] src = e.getValue().data();
            float[] dst = new float[src.length];
            for (int i = 0; i < src.length; i++) {
                double v = src[i] * factor;
                if ("gaussian".equals(privacy.mechanism)) {
                    v += rng.nextGaussian() * scale;
                } else if (laplace) {
                    v += laplace(rng) * scale;
                }
                dst[i] = (float) v;
            }
            out.put(e.getKey(), Tensor.of(dst, e.getValue().shape()));
        }
        return new Result(out, new Report(norm, norm * factor, factor < 1.0));
    }

    /** A standard Laplace draw (scale 1) by inversion. */
    static double laplace(Random rng) {
        double u;
        do {
            u = rng.nextDouble() - 0.5;
        } while (u == -0.5); // log(0)
        return -Math.signum(u) * Math.log(1 - 2 * Math.abs(u));
    }

    /** L2 norm of all tensors as one vector. */
    public static double l2(Map<String, Tensor> tensors) {
        double s = 0;
        for (Tensor t : tensors.values()) {
            for (float v : t.data()) {
                s += (double) v * v;
            }
        }
        return Math.sqrt(s);
    }
}
