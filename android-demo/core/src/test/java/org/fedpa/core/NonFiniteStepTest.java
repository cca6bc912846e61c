package org.fedpa.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.Test;

/**
 * The non-finite step guard of the pure-Java runtime (the ExecuTorch runtime calls the same
 * {@link StepGuard}): a batch whose loss or gradient is not finite leaves every tensor as it was,
 * returns NaN, and is counted by {@link Model#fit}; a finite batch still trains.
 */
public class NonFiniteStepTest {
    private static Map<String, Tensor> personalisation(Model model) throws Exception {
        Manifest m = model.manifest();
        Map<String, Integer> groups = new LinkedHashMap<String, Integer>();
        for (String a : m.config.groupAttributes) {
            groups.put(a, 0);
        }
        Map<String, Tensor> params = Model.copy(model.bundle().privateInit());
        params.putAll(SharedState.toParams(m, SharedState.slice(m, model.bundle().sharedState(), groups), groups));
        return params;
    }

    private static long[] rows(Model model, int n) {
        int nf = model.manifest().config.nFeatures();
        long[] x = new long[n * nf];
        for (int i = 0; i < n; i++) {
            for (int f = 0; f < nf; f++) {
                x[i * nf + f] = (i + f) % model.manifest().config.cardinalities[f];
            }
        }
        return x;
    }

    private static Map<String, float[]> snapshot(Map<String, Tensor> params) {
        Map<String, float[]> out = new LinkedHashMap<String, float[]>();
        for (Map.Entry<String, Tensor> e : params.entrySet()) {
            out.put(e.getKey(), e.getValue().data().clone());
        }
        return out;
    }

    private static boolean same(Map<String, float[]> before, Map<String, Tensor> params) {
        for (Map.Entry<String, float[]> e : before.entrySet()) {
            if (!Arrays.equals(e.getValue(), params.get(e.getKey()).data())) { // NaN-aware (bit patterns)
                return false;
            }
        }
        return true;
    }

    @Test
    public void aNonFiniteStepIsSkippedAndCounted() throws Exception {
        Model model = Fixtures.withItemVectors(new Model(Bundle.open(Fixtures.bundleDir())));
        Map<String, Tensor> params = personalisation(model);
        String poisoned = params.keySet().iterator().next();
        params.get(poisoned).data()[0] = Float.NaN; // e.g. a corrupted adapter value: every logit becomes NaN
        Map<String, float[]> before = snapshot(params);
        int n = 8;
        float[] y = new float[] {1, 0, 1, 0, 1, 0, 1, 0};
        float loss = model.runtime().step(rows(model, n), y, n, params, 0.05f);
        assertTrue("a skipped step reports NaN, got " + loss, Float.isNaN(loss));
        assertTrue("no tensor changed", same(before, params));

        Model.Fit fit = model.fit(rows(model, n), y, params, new TrainingConfig(2, 4, 0.05f), 0, null);
        assertEquals(4, fit.steps);
        assertEquals("every step of the poisoned adapters skipped", 4, fit.skippedSteps);
        assertTrue(same(before, params));
    }

    @Test
    public void anOverflowingGradientIsSkipped() throws Exception {
        Model model = Fixtures.withItemVectors(new Model(Bundle.open(Fixtures.bundleDir())));
        Map<String, Tensor> params = personalisation(model);
        for (Tensor t : params.values()) {
            Arrays.fill(t.data(), 3e37f); // finite values whose products overflow to infinity
        }
        Map<String, float[]> before = snapshot(params);
        float[] y = new float[] {1, 0, 1, 0};
        assertTrue(Float.isNaN(model.runtime().step(rows(model, 4), y, 4, params, 0.05f)));
        assertTrue(same(before, params));
    }

    @Test
    public void aFiniteStepStillTrains() throws Exception {
        Model model = Fixtures.withItemVectors(new Model(Bundle.open(Fixtures.bundleDir())));
        Map<String, Tensor> params = personalisation(model);
        Map<String, float[]> before = snapshot(params);
        float[] y = new float[] {1, 0, 1, 0, 1, 0, 1, 0};
        Model.Fit fit = model.fit(rows(model, 8), y, params, new TrainingConfig(3, 4, 0.5f), 0, null);
        assertEquals(0, fit.skippedSteps);
        assertFalse("SGD changed the adapters", same(before, params));
        assertTrue("loss went down: " + fit.lossBefore + " -> " + fit.lossAfter, fit.lossAfter < fit.lossBefore);
    }

    @Test
    public void guardLooksAtTheLossAndEveryGradientValue() {
        float[] ok = new float[] {0f, -1e30f, 1e30f};
        assertTrue(StepGuard.finite(0.7f, Arrays.asList(ok, new float[0])));
        assertFalse(StepGuard.finite(Float.NaN, Arrays.asList(ok)));
        assertFalse(StepGuard.finite(Float.POSITIVE_INFINITY, Arrays.asList(ok)));
        assertFalse(StepGuard.finite(0.7f, Arrays.asList(ok, new float[] {1f, Float.NEGATIVE_INFINITY})));
        assertFalse(StepGuard.finite(0.7f, Arrays.asList(new float[] {Float.NaN}, ok)));
    }
}
