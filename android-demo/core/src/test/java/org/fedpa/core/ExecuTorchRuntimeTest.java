package org.fedpa.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.Test;

/**
 * The app's own ExecuTorch runtime code (app/src/executorch) run on the JVM against the fake
 * ExecuTorch of tools/executorch-fake, whose programs are the pure-Java engine: the inference
 * inputs in the manifest's order, the personalisation written into the training program's
 * parameter buffers and read back, ExecuTorch's SGD, and the non-finite step guard. Passing the
 * golden replay here proves that plumbing, not the real library (which needs a phone).
 */
public class ExecuTorchRuntimeTest {
    private static Model open(VerifiedRuntimeFactory v) throws Exception {
        Model model = new Model(Bundle.open(Fixtures.bundleDir()), v);
        assertEquals("the fake-backed ExecuTorch runtime is in use (" + v.notice() + ")", "ExecuTorch",
                model.runtime().name());
        return model;
    }

    private static Map<String, Tensor> personalisation(Model model) throws Exception {
        Manifest m = model.manifest();
        Map<String, Integer> groups = new LinkedHashMap<String, Integer>();
        for (String a : m.config.groupAttributes) {
            groups.put(a, 1);
        }
        Map<String, Tensor> params = Model.copy(model.bundle().privateInit());
        params.putAll(SharedState.toParams(m, SharedState.slice(m, model.bundle().sharedState(), groups), groups));
        java.util.Random r = new java.util.Random(3);
        for (Tensor t : params.values()) { // non-zero adapters, so every tensor matters
            for (int i = 0; i < t.data().length; i++) {
                t.data()[i] += (float) (0.1 * r.nextGaussian());
            }
        }
        return params;
    }

    private static long[] rows(Model model, int n) {
        int nf = model.manifest().config.nFeatures();
        long[] x = new long[n * nf];
        for (int i = 0; i < x.length; i++) {
            x[i] = (i * 7 + i / nf) % model.manifest().config.cardinalities[i % nf];
        }
        return x;
    }

    @Test
    public void theAppsExecuTorchRuntimePassesTheGoldenReplayAndIsChosen() throws Exception {
        VerifiedRuntimeFactory v = new VerifiedRuntimeFactory(Fixtures.executorch("fake"));
        Model model = open(v);
        assertEquals("ExecuTorch", v.chosen());
        assertNull(v.notice());
        assertEquals("ExecuTorch", model.runtime().name());
    }

    @Test
    public void itsStepsEqualThePureJavaEnginesAndLeaveOtherTensorsAlone() throws Exception {
        Model et = Fixtures.withItemVectors(open(new VerifiedRuntimeFactory(Fixtures.executorch("fake"))));
        Model java = Fixtures.withItemVectors(new Model(Bundle.open(Fixtures.bundleDir())));
        Map<String, Tensor> a = personalisation(java);
        Map<String, Tensor> b = Model.copy(a);
        float[] y = new float[] {1, 0, 0, 1, 1, 0, 1, 0, 0, 0};
        long[] x = rows(java, y.length);
        for (int step = 0; step < 3; step++) {
            float la = et.runtime().step(x, y, y.length, a, 0.5f);
            float lb = java.runtime().step(x, y, y.length, b, 0.5f);
            assertEquals("loss of step " + step, lb, la, 1e-6f);
        }
        for (String name : b.keySet()) {
            assertArrayEquals(name, b.get(name).data(), a.get(name).data(), 1e-6f);
        }
        assertArrayEquals(java.runtime().score(x, y.length, b), et.runtime().score(x, y.length, a), 1e-5f);
    }

    @Test
    public void aNonFiniteStepIsSkippedByTheExecuTorchRuntime() throws Exception {
        Model et = Fixtures.withItemVectors(open(new VerifiedRuntimeFactory(Fixtures.executorch("fake"))));
        Map<String, Tensor> params = personalisation(et);
        float[] y = new float[] {1, 0, 1, 0};
        long[] x = rows(et, y.length);
        et.runtime().step(x, y, y.length, Model.copy(params), 0.5f); // the program now holds finite values
        params.values().iterator().next().data()[0] = Float.NaN;
        Map<String, Tensor> before = Model.copy(params);
        assertTrue(Float.isNaN(et.runtime().step(x, y, y.length, params, 0.5f)));
        for (String name : before.keySet()) {
            assertArrayEquals(name + " unchanged", before.get(name).data(), params.get(name).data(), 0f);
        }
    }
}
