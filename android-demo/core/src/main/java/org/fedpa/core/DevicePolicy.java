package org.fedpa.core;

import java.util.Locale;

/**
 * The privacy a device gives no matter what a bundle asks ({@code fedpa.privacy.DevicePolicy}):
 * its epsilon budget and delta, a floor on sigma and a ceiling on C. With no explicit floor, the
 * floor is the sigma that keeps the bundle's planned rounds within the budget (replacement
 * adjacency), so the defaults give epsilon at most 8 over the rounds the publisher planned; uploads
 * past the budget are refused in any case.
 */
public final class DevicePolicy {
    public final double epsilonBudget;
    public final double delta;
    public final double minNoiseMultiplier; // NaN: derived from the budget and the bundle's planned rounds
    public final double maxClipNorm;

    /** Defaults: epsilon 8, delta 1e-5, floor from the planned rounds, C at most 1. */
    public static DevicePolicy defaults() {
        return new DevicePolicy(8.0, 1e-5, Double.NaN, 1.0);
    }

    public DevicePolicy(double epsilonBudget, double delta, double minNoiseMultiplier, double maxClipNorm) {
        if (!(epsilonBudget > 0) || Double.isInfinite(epsilonBudget)) {
            throw new IllegalArgumentException("epsilon budget must be a positive finite number, got " + epsilonBudget);
        }
        if (!(delta > 0 && delta < 1)) {
            throw new IllegalArgumentException("delta must satisfy 0 < delta < 1, got " + delta);
        }
        if (!Double.isNaN(minNoiseMultiplier) && !(minNoiseMultiplier > 0 && !Double.isInfinite(minNoiseMultiplier))) {
            throw new IllegalArgumentException("minimum noise multiplier must be positive and finite, got "
                    + minNoiseMultiplier);
        }
        if (!(maxClipNorm > 0) || Double.isInfinite(maxClipNorm)) {
            throw new IllegalArgumentException("maximum clip norm must be positive and finite, got " + maxClipNorm);
        }
        this.epsilonBudget = epsilonBudget;
        this.delta = delta;
        this.minNoiseMultiplier = minNoiseMultiplier;
        this.maxClipNorm = maxClipNorm;
    }

    /** The smallest sigma accepted for a bundle planning {@code rounds} uploads per user. */
    public double floor(int rounds) {
        return Double.isNaN(minNoiseMultiplier) ? Accountant.sigmaFor(epsilonBudget, rounds, delta) : minNoiseMultiplier;
    }

    /** The settings this device applies to a bundle: its sigma and C if they clear the policy, the device's delta and budget. */
    public Privacy apply(Privacy bundle) throws PrivacyPolicyException {
        if ("none".equals(bundle.mechanism)) {
            throw new PrivacyPolicyException("the bundle asks for no LDP (mechanism 'none'); this device always adds noise");
        }
        double floor = floor(bundle.plannedRounds);
        if (!(bundle.noiseMultiplier >= floor * (1 - 1e-9)) || Double.isInfinite(bundle.noiseMultiplier)) {
            throw new PrivacyPolicyException(String.format(Locale.ROOT,
                    "noise multiplier sigma=%s is below this device's floor sigma >= %.4g (epsilon budget %s over %d "
                            + "planned rounds, delta=%s); refusing the bundle's privacy settings",
                    bundle.noiseMultiplier, floor, epsilonBudget, bundle.plannedRounds, delta));
        }
        if (!(bundle.clipNorm <= maxClipNorm)) {
            throw new PrivacyPolicyException("clip norm C=" + bundle.clipNorm + " is above this device's maximum C <= "
                    + maxClipNorm);
        }
        return new Privacy(bundle.mechanism, bundle.clipNorm, bundle.noiseMultiplier, delta, epsilonBudget,
                bundle.plannedRounds);
    }
}
