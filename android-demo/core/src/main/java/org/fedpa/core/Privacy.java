package org.fedpa.core;

import org.json.JSONException;
import org.json.JSONObject;

/** The LDP settings a device applies before upload ({@code fedpa.manifest.PrivacySettings}). */
public final class Privacy {
    public final String mechanism; // "gaussian", "laplace" or "none"
    public final double clipNorm;
    public final double noiseMultiplier;
    public final double delta;
    public final double epsilonBudget; // +inf when the publisher set no budget

    public Privacy(String mechanism, double clipNorm, double noiseMultiplier, double delta, double epsilonBudget) {
        if (!"gaussian".equals(mechanism) && !"laplace".equals(mechanism) && !"none".equals(mechanism)) {
            throw new IllegalArgumentException("mechanism must be gaussian, laplace or none, got " + mechanism);
        }
        if (!(clipNorm > 0) || Double.isInfinite(clipNorm)) {
            throw new IllegalArgumentException("clip_norm must be a positive finite number, got " + clipNorm);
        }
        if (!"none".equals(mechanism) && !(noiseMultiplier > 0 && !Double.isInfinite(noiseMultiplier))) {
            throw new IllegalArgumentException("noise_multiplier must be > 0 with " + mechanism + " noise, got "
                    + noiseMultiplier);
        }
        if (!(delta > 0 && delta < 1)) {
            throw new IllegalArgumentException("delta must satisfy 0 < delta < 1, got " + delta);
        }
        if (!(epsilonBudget > 0)) {
            throw new IllegalArgumentException("epsilon_budget must be > 0, got " + epsilonBudget);
        }
        this.mechanism = mechanism;
        this.clipNorm = clipNorm;
        this.noiseMultiplier = noiseMultiplier;
        this.delta = delta;
        this.epsilonBudget = epsilonBudget;
    }

    static Privacy fromJson(JSONObject o) throws JSONException, BundleException {
        if (o == null) {
            return new Privacy("gaussian", 1.0, 1.0, 1e-5, Double.POSITIVE_INFINITY);
        }
        try {
            return new Privacy(o.optString("mechanism", "gaussian"), o.optDouble("clip_norm", 1.0),
                    o.optDouble("noise_multiplier", 1.0), o.optDouble("delta", 1e-5),
                    o.isNull("epsilon_budget") ? Double.POSITIVE_INFINITY : o.getDouble("epsilon_budget"));
        } catch (IllegalArgumentException e) {
            throw new BundleException("manifest privacy settings: " + e.getMessage(), e);
        }
    }

    /** Epsilon after {@code rounds} uploads (see {@link Accountant}). */
    public double epsilonAfter(int rounds) {
        return Accountant.epsilon(this, rounds);
    }

    /** Epsilon after one more upload; refuses to go past the budget. */
    public double checkBudget(int roundsDone) throws PrivacyBudgetException {
        double eps = epsilonAfter(roundsDone + 1);
        if (eps > epsilonBudget) {
            throw new PrivacyBudgetException(String.format(java.util.Locale.ROOT,
                    "upload #%d would raise epsilon from %.3f to %.3f, past the budget %.3f (delta=%g)",
                    roundsDone + 1, epsilonAfter(roundsDone), eps, epsilonBudget, delta));
        }
        return eps;
    }
}
