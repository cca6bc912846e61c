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
    public final int plannedRounds; // uploads per user the publisher planned sigma for

    public Privacy(String mechanism, double clipNorm, double noiseMultiplier, double delta, double epsilonBudget) {
        this(mechanism, clipNorm, noiseMultiplier, delta, epsilonBudget, 30);
    }

    public Privacy(String mechanism, double clipNorm, double noiseMultiplier, double delta, double epsilonBudget,
                   int plannedRounds) {
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
        if (plannedRounds < 1) {
            throw new IllegalArgumentException("rounds must be >= 1, got " + plannedRounds);
        }
        this.plannedRounds = plannedRounds;
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
                    o.isNull("epsilon_budget") ? Double.POSITIVE_INFINITY : o.getDouble("epsilon_budget"),
                    o.optInt("rounds", 30));
        } catch (IllegalArgumentException e) {
            throw new BundleException("manifest privacy settings: " + e.getMessage(), e);
        }
    }

    /** What an upload with these settings applies (the ledger entry). */
    public Accountant.Upload upload() {
        return new Accountant.Upload(mechanism, "none".equals(mechanism) ? 0.0 : noiseMultiplier, clipNorm);
    }

    /** Epsilon after {@code rounds} uploads (see {@link Accountant}). */
    public double epsilonAfter(int rounds) {
        return Accountant.epsilon(this, rounds);
    }

    /** Epsilon after one more upload with these settings on top of {@code ledger}; refuses to go past the budget. */
    public double checkBudget(java.util.List<Accountant.Upload> ledger) throws PrivacyBudgetException {
        double eps = Accountant.epsilon(Accountant.plus(ledger, upload()), delta);
        if (eps > epsilonBudget) {
            throw new PrivacyBudgetException(String.format(java.util.Locale.ROOT,
                    "privacy budget spent: upload #%d would raise epsilon from %.3f to %.3f, past this device's "
                            + "budget %.3f (delta=%g, replacement adjacency); nothing was trained or sent",
                    ledger.size() + 1, Accountant.epsilon(ledger, delta), eps, epsilonBudget, delta));
        }
        return eps;
    }

    /** {@link #checkBudget(java.util.List)} after {@code roundsDone} uploads with these very settings. */
    public double checkBudget(int roundsDone) throws PrivacyBudgetException {
        return checkBudget(java.util.Collections.nCopies(roundsDone, upload()));
    }
}
