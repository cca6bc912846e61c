package org.fedpa.core;

import java.io.File;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * Latency of the pure-Java engine on the test bundle (docs/design.md §5 cost metrics), on this JVM: ranking
 * 256 candidates and one training step of batch 64, median of many runs after warm-up.
 * Usage: {@code java ... org.fedpa.core.EngineBench BUNDLE_DIR}. Prints one line; asserts nothing.
 */
public final class EngineBench {
    private EngineBench() {
    }

    public static void main(String[] args) throws Exception {
        Model model = new Model(Bundle.open(new File(args[0])));
        Manifest m = model.manifest();
        Map<String, Integer> groups = new java.util.LinkedHashMap<String, Integer>();
        for (String a : m.config.groupAttributes) {
            groups.put(a, 1);
        }
        Map<String, Tensor> params = Model.copy(model.bundle().privateInit());
        params.putAll(SharedState.toParams(m, model.bundle().sharedState(), groups));
        long[] user = Catalog.syntheticUser(m, 1);
        List<long[]> items = new ArrayList<long[]>();
        for (Catalog.Item it : Catalog.synthetic(m, 256, 2)) {
            items.add(it.codes);
        }
        long[] x = model.rows(user, items);
        long[] xb = Arrays.copyOf(x, 64 * m.config.nFeatures());
        float[] y = new float[64];
        Random r = new Random(3);
        for (int i = 0; i < y.length; i++) {
            y[i] = r.nextInt(2);
        }
        double rank = median(model, x, 256, null, params, 300);
        double train = median(model, xb, 64, y, params, 300);
        System.out.printf(java.util.Locale.ROOT,
                "pure-Java engine on this JVM: rank 256 candidates %.3f ms, training step (batch 64) %.3f ms (median)%n",
                rank, train);
    }

    private static double median(Model model, long[] x, int n, float[] y, Map<String, Tensor> params, int runs)
            throws FedPAException {
        double[] ms = new double[runs];
        for (int i = -runs / 2; i < runs; i++) { // first half-batch of runs: JIT warm-up
            long t = System.nanoTime();
            if (y == null) {
                model.runtime().score(x, n, params);
            } else {
                model.runtime().step(x, y, n, params, 0.0f);
            }
            if (i >= 0) {
                ms[i] = (System.nanoTime() - t) / 1e6;
            }
        }
        Arrays.sort(ms);
        return ms[runs / 2];
    }
}
