package org.fedpa.core;

/**
 * Privacy accounting on the device, the same numbers {@code fedpa.privacy.epsilon_after} gives.
 *
 * <p>Gaussian: Renyi DP of the (unsampled) Gaussian mechanism, {@code rounds * a / (2 sigma^2)} at
 * each order a of dp-accounting's default order list, converted to (epsilon, delta) with the
 * improved bound of Balle et al. 2020 (Prop. 12) exactly as {@code dp_accounting.rdp} does.
 * Laplace: basic composition, {@code rounds / sigma} (pure epsilon; an upper bound on the PLD
 * accountant's value the Python side reports). None: infinite after the first upload.
 */
public final class Accountant {
    private static final double[] ORDERS = orders();

    private Accountant() {
    }

    private static double[] orders() {
        double[] out = new double[99 + 53 + 4];
        int i = 0;
        for (int x = 1; x < 100; x++) {
            out[i++] = 1 + x / 10.0;
        }
        for (int a = 11; a < 64; a++) {
            out[i++] = a;
        }
        out[i++] = 128;
        out[i++] = 256;
        out[i++] = 512;
        out[i] = 1024;
        return out;
    }

    /** Epsilon at {@code privacy.delta} of a device that uploaded in {@code rounds} rounds. */
    public static double epsilon(Privacy privacy, int rounds) {
        if (rounds < 0) {
            throw new IllegalArgumentException("rounds must be >= 0, got " + rounds);
        }
        if (rounds == 0) {
            return 0.0;
        }
        if ("none".equals(privacy.mechanism)) {
            return Double.POSITIVE_INFINITY;
        }
        if ("laplace".equals(privacy.mechanism)) {
            return rounds / privacy.noiseMultiplier;
        }
        return gaussianEpsilon(privacy.noiseMultiplier, rounds, privacy.delta);
    }

    static double gaussianEpsilon(double sigma, int rounds, double delta) {
        double best = Double.POSITIVE_INFINITY;
        for (double a : ORDERS) {
            double rdp = rounds * a / (2 * sigma * sigma);
            double eps;
            if (delta * delta + Math.expm1(-rdp) > 0) {
                eps = 0.0; // bounded through the KL divergence
            } else if (a > 1.01) {
                eps = rdp + Math.log1p(-1 / a) - Math.log(delta * a) / (a - 1);
            } else {
                eps = Double.POSITIVE_INFINITY;
            }
            if (eps < best) {
                best = eps;
            }
        }
        return Math.max(0.0, best);
    }
}
