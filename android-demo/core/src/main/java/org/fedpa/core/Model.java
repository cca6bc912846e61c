package org.fedpa.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * One user's on-device model: a verified bundle's student, the pure-Java {@link Engine} and
 * {@link Trainer} (golden-vector checks always use these), the {@link ModelRuntime} that ranks and
 * trains (the same pure-Java code unless the app plugs in ExecuTorch), and local epochs of SGD.
 */
public final class Model {
    private final Bundle bundle;
    private final Engine engine;
    private final Trainer trainer;
    private final ModelRuntime runtime;

    public Model(Bundle bundle) throws FedPAException {
        this(bundle, JavaRuntime.FACTORY);
    }

    /** The bundle's student, run by the runtime the factory makes (the pure-Java one by default). */
    public Model(Bundle bundle, ModelRuntime.Factory factory) throws FedPAException {
        this.bundle = bundle;
        FrozenWeights frozen = bundle.frozenWeights();
        this.engine = new Engine(bundle.manifest().config, frozen);
        this.trainer = new Trainer(engine, frozen);
        this.runtime = factory.create(bundle, engine, trainer);
    }

    public ModelRuntime runtime() {
        return runtime;
    }

    public Bundle bundle() {
        return bundle;
    }

    public Manifest manifest() {
        return bundle.manifest();
    }

    public Engine engine() {
        return engine;
    }

    public Trainer trainer() {
        return trainer;
    }

    /** Full input rows (user codes then item codes) for these items. */
    public long[] rows(long[] userCodes, List<long[]> itemCodes) {
        int nf = manifest().config.nFeatures();
        int nu = manifest().config.nUserFeatures;
        if (userCodes.length != nu) {
            throw new IllegalArgumentException("user has " + userCodes.length + " feature codes, the model needs " + nu);
        }
        long[] x = new long[itemCodes.size() * nf];
        for (int i = 0; i < itemCodes.size(); i++) {
            long[] item = itemCodes.get(i);
            if (item.length != nf - nu) {
                throw new IllegalArgumentException("item has " + item.length + " codes, the model needs " + (nf - nu));
            }
            System.arraycopy(userCodes, 0, x, i * nf, nu);
            System.arraycopy(item, 0, x, i * nf + nu, item.length);
        }
        return x;
    }

    /** Indices of the top-k candidates by logit (ties: earlier first), and the logits. */
    public int[] topK(float[] logits, int k) {
        List<Integer> idx = new ArrayList<Integer>();
        for (int i = 0; i < logits.length; i++) {
            idx.add(i);
        }
        final float[] l = logits;
        java.util.Collections.sort(idx, new java.util.Comparator<Integer>() {
            @Override
            public int compare(Integer a, Integer b) {
                int c = Float.compare(l[b], l[a]);
                return c != 0 ? c : a.compareTo(b);
            }
        });
        int[] out = new int[Math.min(k, idx.size())];
        for (int i = 0; i < out.length; i++) {
            out[i] = idx.get(i);
        }
        return out;
    }

    /** Result of local training. */
    public static final class Fit {
        public final float lossBefore;
        public final float lossAfter;
        public final int steps;
        public final int skippedSteps; // not applied: non-finite loss or gradient (ModelRuntime.step)
        public final double meanLoss; // mean loss of the applied steps (NaN: none applied), as edge.programs.train
        public final double aucBefore; // AUC of the training labels before / after (NaN: one class only)
        public final double aucAfter;

        Fit(float lossBefore, float lossAfter, int steps, int skippedSteps, double meanLoss, double aucBefore,
            double aucAfter) {
            this.lossBefore = lossBefore;
            this.lossAfter = lossAfter;
            this.steps = steps;
            this.skippedSteps = skippedSteps;
            this.meanLoss = meanLoss;
            this.aucBefore = aucBefore;
            this.aucAfter = aucAfter;
        }
    }

    /** Listener for training progress (called after every step). */
    public interface StepListener {
        void step(int done, int total, float loss);
    }

    /**
     * SGD on all personalisation tensors in {@code params} (in place): per epoch a fresh seeded
     * permutation cut into mini-batches, the last one smaller (as {@code fedpa.schedule}).
     */
    public Fit fit(long[] x, float[] y, Map<String, Tensor> params, TrainingConfig cfg, long seed, StepListener listener)
            throws FedPAException {
        int n = y.length;
        int nf = manifest().config.nFeatures();
        int perEpoch = (n + cfg.batchSize - 1) / cfg.batchSize;
        int total = perEpoch * cfg.epochs;
        float[] first = runtime.score(x, n, params);
        float before = Trainer.bceLoss(first, y);
        Random rng = new Random(seed);
        int done = 0;
        int skipped = 0;
        double lossSum = 0; // of the applied steps (finite losses), for Fit.meanLoss
        int applied = 0;
        for (int e = 0; e < cfg.epochs; e++) {
            int[] order = permutation(n, rng);
            for (int start = 0; start < n; start += cfg.batchSize) {
                int b = Math.min(cfg.batchSize, n - start);
                long[] bx = new long[b * nf];
                float[] by = new float[b];
                for (int i = 0; i < b; i++) {
                    int row = order[start + i];
                    System.arraycopy(x, row * nf, bx, i * nf, nf);
                    by[i] = y[row];
                }
                float loss = runtime.step(bx, by, b, params, cfg.lr);
                skipped += Float.isNaN(loss) ? 1 : 0;
                if (!Float.isNaN(loss) && !Float.isInfinite(loss)) {
                    lossSum += loss;
                    applied++;
                }
                done++;
                if (listener != null) {
                    listener.step(done, total, loss);
                }
            }
        }
        float[] last = runtime.score(x, n, params);
        float after = Trainer.bceLoss(last, y);
        double mean = applied > 0 ? lossSum / applied : Double.NaN;
        return new Fit(before, after, done, skipped, mean, Metrics.auc(y, first), Metrics.auc(y, last));
    }

    static int[] permutation(int n, Random rng) {
        int[] p = new int[n];
        for (int i = 0; i < n; i++) {
            p[i] = i;
        }
        for (int i = n - 1; i > 0; i--) {
            int j = rng.nextInt(i + 1);
            int t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
        return p;
    }

    /** Deep copy of a tensor map. */
    public static Map<String, Tensor> copy(Map<String, Tensor> m) {
        Map<String, Tensor> out = new LinkedHashMap<String, Tensor>();
        for (Map.Entry<String, Tensor> e : m.entrySet()) {
            out.put(e.getKey(), e.getValue().copy());
        }
        return out;
    }
}
