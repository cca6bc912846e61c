package org.fedpa.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Privacy accounting on the device, the same numbers {@code fedpa.privacy.epsilon_of} gives.
 *
 * <p>Adjacency is <b>replacement</b> (local DP: any two updates of the user differ by at most 2C
 * after clipping), so an upload with noise multiplier sigma is the Gaussian mechanism at sigma/2.
 * Each upload is composed with its <b>own</b> sigma, from the ledger of what the device actually
 * sent. Gaussian: Renyi DP of the (unsampled) Gaussian mechanism, summed over uploads as
 * {@code a * 2 / sigma_i^2} at each order a of dp-accounting's default order list, converted to
 * (epsilon, delta) with the improved bound of Balle et al. 2020 (Prop. 12) exactly as
 * {@code dp_accounting.rdp} does. Laplace: basic composition, {@code 2 / sigma} per upload (pure
 * epsilon, added to the Gaussian part: an upper bound on the PLD accountant's value the Python side
 * reports). None: infinite.
 */
public final class Accountant {
    private static final double[] ORDERS = orders();

    /** What one upload applied: the accountant's unit (the clip norm does not change epsilon). */
    public static final class Upload {
        public final String mechanism;
        public final double noiseMultiplier;
        public final double clipNorm;

        public Upload(String mechanism, double noiseMultiplier, double clipNorm) {
            this.mechanism = mechanism;
            this.noiseMultiplier = noiseMultiplier;
            this.clipNorm = clipNorm;
        }
    }

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

    /** Epsilon at {@code privacy.delta} of a device that uploaded in {@code rounds} rounds with these settings. */
    public static double epsilon(Privacy privacy, int rounds) {
        if (rounds < 0) {
            throw new IllegalArgumentException("rounds must be >= 0, got " + rounds);
        }
        return epsilon(Collections.nCopies(rounds, privacy.upload()), privacy.delta);
    }

    /** Epsilon at {@code delta} of a device that made {@code uploads}, each with its own sigma. */
    public static double epsilon(List<Upload> uploads, double delta) {
        if (uploads.isEmpty()) {
            return 0.0;
        }
        double rdpPerOrder = 0; // sum of 2 / sigma^2 over Gaussian uploads (times the order a)
        double pure = 0;
        boolean gaussian = false;
        for (Upload u : uploads) {
            if ("none".equals(u.mechanism)) {
                return Double.POSITIVE_INFINITY;
            }
            if ("laplace".equals(u.mechanism)) {
                pure += 2.0 / u.noiseMultiplier;
            } else {
                gaussian = true;
                rdpPerOrder += 2.0 / (u.noiseMultiplier * u.noiseMultiplier);
            }
        }
        return pure + (gaussian ? rdpEpsilon(rdpPerOrder, delta) : 0.0);
    }

    /** Replacement-adjacency epsilon of {@code rounds} Gaussian uploads at one sigma. */
    static double gaussianEpsilon(double sigma, int rounds, double delta) {
        return rdpEpsilon(rounds * 2.0 / (sigma * sigma), delta);
    }

    private static double rdpEpsilon(double rdpPerOrder, double delta) {
        double best = Double.POSITIVE_INFINITY;
        for (double a : ORDERS) {
            double rdp = rdpPerOrder * a;
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

    /** Smallest sigma (bisection, as {@code fedpa.privacy.noise_multiplier_for}) keeping {@code rounds} uploads within epsilon. */
    public static double sigmaFor(double epsilon, int rounds, double delta) {
        double lo = 1e-2;
        double hi = 1e4;
        for (int i = 0; i < 60; i++) {
            double mid = Math.sqrt(lo * hi);
            if (gaussianEpsilon(mid, rounds, delta) > epsilon) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return hi;
    }

    /** A mutable copy of a ledger plus one more upload. */
    static List<Upload> plus(List<Upload> ledger, Upload next) {
        List<Upload> out = new ArrayList<Upload>(ledger);
        out.add(next);
        return out;
    }
}
