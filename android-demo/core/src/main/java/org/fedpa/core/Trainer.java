package org.fedpa.core;

import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Gradient and SGD step for the personalisation tensors, the maths of the bundle's training
 * program: loss = mean over the batch of BCE-with-logits(logit, label); backbone, embeddings and
 * head stay frozen; plain SGD {@code p <- p - lr * grad} on the trainable tensors.
 */
public final class Trainer {
    private final Engine engine;
    private final FrozenWeights frozen;

    public Trainer(Engine engine, FrozenWeights frozen) {
        this.engine = engine;
        this.frozen = frozen;
    }

    /** Loss and the gradient of every personalisation tensor, by parameter name. */
    public static final class Result {
        public final float loss;
        public final Map<String, float[]> gradients;

        Result(float loss, Map<String, float[]> gradients) {
            this.loss = loss;
            this.gradients = gradients;
        }
    }

    /** Mean BCE-with-logits, computed stably as torch does: max(z,0) - z·y + log1p(exp(-|z|)). */
    public static float bceLoss(float[] logits, float[] labels) {
        double sum = 0;
        for (int i = 0; i < logits.length; i++) {
            double z = logits[i];
            sum += Math.max(z, 0) - z * labels[i] + Math.log1p(Math.exp(-Math.abs(z)));
        }
        return (float) (sum / logits.length);
    }

    /** Forward + backward on n rows ({@code x} [n, F], {@code y} [n] in {0, 1}). */
    public Result gradients(long[] x, float[] y, int n, Map<String, Tensor> params) {
        if (n < 1 || y.length != n) {
            throw new IllegalArgumentException("need n >= 1 labels, got n=" + n + " and " + y.length + " labels");
        }
        ModelConfig cfg = engine.config();
        Engine.Trace t = engine.forward(x, n, params);
        Map<String, float[]> grads = new LinkedHashMap<String, float[]>();
        for (Map.Entry<String, Tensor> e : params.entrySet()) {
            grads.put(e.getKey(), new float[e.getValue().numel()]);
        }
        int hl = cfg.hidden[cfg.nLayers() - 1];
        float[] dh = new float[n * hl];
        float[] wHead = frozen.headWeight.data();
        for (int i = 0; i < n; i++) {
            double p = 1.0 / (1.0 + Math.exp(-t.logits[i]));
            float dz = (float) ((p - y[i]) / n);
            for (int j = 0; j < hl; j++) {
                dh[i * hl + j] = dz * wHead[j];
            }
        }
        for (int l = cfg.nLayers() - 1; l >= 0; l--) {
            dh = layerBackward(l, dh, t, params, grads);
        }
        if (cfg.privateUserEmbeddings) {
            float[] g = grads.get(Names.USER_EMBEDDING);
            int d = cfg.embeddingDim;
            int in = cfg.inputDim(); // user features are wide and come first in each input row
            for (int i = 0; i < n; i++) {
                for (int k = 0; k < cfg.nUserFeatures * d; k++) {
                    g[k] += dh[i * in + k];
                }
            }
        }
        return new Result(bceLoss(t.logits, y), grads);
    }

    /**
     * One SGD step in place on the named tensors; returns the loss before the step. A step whose
     * loss or any gradient is not finite is not applied and returns {@link Float#NaN}: one
     * diverging batch must not poison the adapters (as {@code fedpa.runtime.programs.Trainer.step}
     * and the simulation harness; see {@link ModelRuntime#step}).
     */
    public float step(long[] x, float[] y, int n, Map<String, Tensor> params, Collection<String> trainable, float lr) {
        Result r = gradients(x, y, n, params);
        if (!StepGuard.finite(r.loss, r.gradients.values())) {
            return Float.NaN;
        }
        for (String name : trainable) {
            float[] p = params.get(name).data();
            float[] g = r.gradients.get(name);
            for (int i = 0; i < p.length; i++) {
                p[i] = p[i] - lr * g[i];
            }
        }
        return r.loss;
    }

    private float[] layerBackward(int l, float[] dOut, Engine.Trace t, Map<String, Tensor> params,
                                  Map<String, float[]> grads) {
        ModelConfig cfg = engine.config();
        int n = t.n;
        int in = cfg.layerIn(l);
        int out = cfg.hidden[l];
        int r = cfg.rank;
        int nb = cfg.nBranches();
        int gh = cfg.gateHidden;
        int first = cfg.paperGate ? 1 : 0;
        float s = cfg.scale();
        float[] x = t.input[l];
        float[] pre = t.pre[l];
        float[] w = t.weights[l];
        float[] dx = new float[n * in];
        float[] dLogit = new float[n * nb];
        float[] dPre = new float[n * out];
        int branches = t.branch[l].length;
        float[][] dBranch = new float[branches][n * out];
        for (int i = 0; i < n; i++) {
            double[] dWeight = new double[nb];
            for (int o = 0; o < out; o++) {
                float g = dOut[i * out + o];
                float c = pre[i * out + o] > 0 ? pre[i * out + o] : 0f;
                if (cfg.paperGate) {
                    dWeight[0] += (double) g * c;
                    dPre[i * out + o] = pre[i * out + o] > 0 ? w[i * nb] * g : 0f;
                } else {
                    dPre[i * out + o] = pre[i * out + o] > 0 ? g : 0f;
                }
                for (int k = 0; k < branches; k++) {
                    dWeight[first + k] += (double) g * t.branch[l][k][i * out + o];
                    dBranch[k][i * out + o] = w[i * nb + first + k] * g;
                }
            }
            if (cfg.paperGate) { // softmax backward: dz_j = pi_j (dpi_j - sum_m pi_m dpi_m)
                double dot = 0;
                for (int j = 0; j < nb; j++) {
                    dot += w[i * nb + j] * dWeight[j];
                }
                for (int j = 0; j < nb; j++) {
                    dLogit[i * nb + j] = (float) (w[i * nb + j] * (dWeight[j] - dot));
                }
            } else { // sigmoid backward
                for (int j = 0; j < nb; j++) {
                    double sg = w[i * nb + j];
                    dLogit[i * nb + j] = (float) (dWeight[j] * sg * (1 - sg));
                }
            }
        }
        float[] wBase = frozen.weight[l].data();
        addInputGrad(dx, dPre, wBase, n, in, out);
        for (int k = 0; k < branches; k++) {
            String nameA = Names.loraA(cfg, l, k);
            String nameB = Names.loraB(cfg, l, k);
            float[] a = params.get(nameA).data();
            float[] b = params.get(nameB).data();
            float[] low = t.low[l][k];
            float[] dLow = new float[n * r];
            float[] db = grads.get(nameB);
            double[] accB = new double[out * r];
            for (int i = 0; i < n; i++) {
                for (int o = 0; o < out; o++) {
                    float g = s * dBranch[k][i * out + o];
                    for (int m = 0; m < r; m++) {
                        accB[o * r + m] += (double) g * low[i * r + m];
                    }
                }
                for (int m = 0; m < r; m++) {
                    double acc = 0;
                    for (int o = 0; o < out; o++) {
                        acc += (double) b[o * r + m] * dBranch[k][i * out + o];
                    }
                    dLow[i * r + m] = (float) (s * acc);
                }
            }
            store(db, accB);
            addWeightGrad(grads.get(nameA), dLow, x, n, r, in);
            addInputGrad(dx, dLow, a, n, in, r);
        }
        float[] hidden = t.gateHidden[l];
        float[] q = new float[hidden.length];
        for (int i = 0; i < q.length; i++) {
            q[i] = hidden[i] > 0 ? hidden[i] : 0f;
        }
        addWeightGrad(grads.get(Names.gate(l, "w2")), dLogit, q, n, nb, gh);
        addBiasGrad(grads.get(Names.gate(l, "b2")), dLogit, n, nb);
        float[] w2 = params.get(Names.gate(l, "w2")).data();
        float[] dq = new float[n * gh];
        addInputGrad(dq, dLogit, w2, n, gh, nb);
        for (int i = 0; i < dq.length; i++) {
            if (!(hidden[i] > 0)) {
                dq[i] = 0f;
            }
        }
        addWeightGrad(grads.get(Names.gate(l, "w1")), dq, x, n, gh, in);
        addBiasGrad(grads.get(Names.gate(l, "b1")), dq, n, gh);
        addInputGrad(dx, dq, params.get(Names.gate(l, "w1")).data(), n, in, gh);
        return dx;
    }

    /** dx[n, in] += dy[n, out] · W[out, in]. */
    private static void addInputGrad(float[] dx, float[] dy, float[] w, int n, int in, int out) {
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < in; j++) {
                double acc = 0;
                for (int o = 0; o < out; o++) {
                    acc += (double) dy[i * out + o] * w[o * in + j];
                }
                dx[i * in + j] += (float) acc;
            }
        }
    }

    /** dW[out, in] = sum_i dy[i, out] ⊗ x[i, in]. */
    private static void addWeightGrad(float[] dw, float[] dy, float[] x, int n, int out, int in) {
        double[] acc = new double[out * in];
        for (int i = 0; i < n; i++) {
            for (int o = 0; o < out; o++) {
                double g = dy[i * out + o];
                if (g == 0) {
                    continue;
                }
                for (int j = 0; j < in; j++) {
                    acc[o * in + j] += g * x[i * in + j];
                }
            }
        }
        store(dw, acc);
    }

    private static void addBiasGrad(float[] db, float[] dy, int n, int out) {
        double[] acc = new double[out];
        for (int i = 0; i < n; i++) {
            for (int o = 0; o < out; o++) {
                acc[o] += dy[i * out + o];
            }
        }
        store(db, acc);
    }

    private static void store(float[] target, double[] acc) {
        for (int i = 0; i < target.length; i++) {
            target[i] += (float) acc[i];
        }
    }
}
