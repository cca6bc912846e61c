package org.fedpa.core;

import java.util.Map;

/**
 * The FedPA student in plain Java: the same maths as {@code fedpa.model.FedPARecommender}, so
 * the app ranks and trains without ExecuTorch. Parts to whole, for one sample row x:
 *
 * <pre>
 *   e      = concat_f E[x_f + offset_f]  (+ private delta on the first n_user features);
 *            the last n_signal features read the narrower table E_s (width signal_dim); with
 *            manifest item_vectors the item code's e is the candidate's item vector instead
 *            ({@link ItemVectors}, served by the item table), and E holds no rows for it
 *   layer: c = relu(W h + b);  u = s·B_u(A_u h);  h_k = s·B_k(A_k h);  g = W2 relu(W1 h + b1) + b2
 *          paper:    h' = pi_0 c + pi_1 u + sum_k pi_{1+k} h_k,   pi = softmax(g)
 *          residual: h' = c + sig(g_0) u + sum_k sig(g_k) h_k
 *   logit  = w_head · h_L + b_head
 * </pre>
 *
 * Personalisation tensors are passed by model parameter name ({@link Names}); frozen weights
 * come from {@link FrozenWeights}. Intermediates are kept in a {@link Trace} for {@link Trainer}.
 */
public final class Engine {
    private final ModelConfig cfg;
    private final FrozenWeights frozen;
    private final int[] offsets; // row of code 0 of each feature within its own table (wide or signal)
    private final int[] columns; // first column of each feature in the layer-0 input
    private final ItemVectors itemVectors; // null: the item code (if any) is embedded from the table

    public Engine(ModelConfig cfg, FrozenWeights frozen) {
        this.cfg = cfg;
        this.frozen = frozen;
        this.offsets = new int[cfg.nFeatures()];
        this.columns = new int[cfg.nFeatures()];
        for (int f = 1; f < offsets.length; f++) {
            int previous = f - 1 == cfg.itemColumn ? 0 : cfg.cardinalities[f - 1]; // no rows for the item code
            offsets[f] = f == cfg.nWideFeatures() ? 0 : offsets[f - 1] + previous;
            columns[f] = columns[f - 1] + cfg.dim(f - 1);
        }
        this.itemVectors = cfg.takesItemVectors() ? new ItemVectors(cfg.embeddingDim) : null;
    }

    public ModelConfig config() {
        return cfg;
    }

    /** The item vectors the item-code feature is embedded from (null when the table holds its rows). */
    public ItemVectors itemVectors() {
        return itemVectors;
    }

    /** The frozen weights this engine runs with (read once from the bundle's {@code backbone.safetensors}). */
    public FrozenWeights frozen() {
        return frozen;
    }

    /** Intermediates of one forward pass over a batch of n rows. */
    static final class Trace {
        final int n;
        final float[][] input; // [layer][n*in]   layer input h
        final float[][] pre; // [layer][n*out]  W h + b
        final float[][][] low; // [layer][branch][n*r]  A h; branch 0 = user, 1..K = groups
        final float[][][] branch; // [layer][branch][n*out] u, h_1..h_K (scaled by alpha/r)
        final float[][] gateHidden; // [layer][n*gh]  W1 h + b1 (before relu)
        final float[][] weights; // [layer][n*nb]   softmax or sigmoid of the gate logits
        float[] last; // [n*h_L]
        final float[] logits; // [n]

        Trace(int n, int layers, int branches) {
            this.n = n;
            input = new float[layers][];
            pre = new float[layers][];
            low = new float[layers][branches][];
            branch = new float[layers][branches][];
            gateHidden = new float[layers][];
            weights = new float[layers][];
            logits = new float[n];
        }
    }

    /** Logits for n rows of feature codes ({@code x} is [n, F] row-major). */
    public float[] score(long[] x, int n, Map<String, Tensor> params) {
        return forward(x, n, params).logits;
    }

    Trace forward(long[] x, int n, Map<String, Tensor> params) {
        int nf = cfg.nFeatures();
        int in = cfg.inputDim();
        if (x.length != n * nf) {
            throw new IllegalArgumentException("x has " + x.length + " codes, expected " + n + " x " + nf);
        }
        float[] wide = frozen.embedding.data();
        float[] signal = frozen.signalEmbedding == null ? null : frozen.signalEmbedding.data();
        float[] delta = cfg.privateUserEmbeddings ? params.get(Names.USER_EMBEDDING).data() : null;
        float[] h = new float[n * in];
        for (int i = 0; i < n; i++) {
            for (int f = 0; f < nf; f++) {
                long code = x[i * nf + f];
                if (code < 0 || code >= cfg.cardinalities[f]) {
                    throw new IllegalArgumentException("feature " + f + " code " + code + " out of range 0.."
                            + (cfg.cardinalities[f] - 1));
                }
                int d = cfg.dim(f);
                float[] table = f < cfg.nWideFeatures() ? wide : signal;
                int row = (int) (offsets[f] + code);
                if (f == cfg.itemColumn) { // the served item vector, not a table row
                    table = itemVectors.get(code);
                    row = 0;
                }
                for (int j = 0; j < d; j++) {
                    float v = table[row * d + j];
                    if (delta != null && f < cfg.nUserFeatures) {
                        v += delta[f * d + j];
                    }
                    h[i * in + columns[f] + j] = v;
                }
            }
        }
        int branches = 1 + cfg.groupAttributes.size();
        Trace t = new Trace(n, cfg.nLayers(), branches);
        for (int l = 0; l < cfg.nLayers(); l++) {
            h = layer(l, h, n, params, t);
        }
        float[] w = frozen.headWeight.data();
        float b = frozen.headBias.data()[0];
        int hl = cfg.hidden[cfg.nLayers() - 1];
        for (int i = 0; i < n; i++) {
            double acc = b;
            for (int j = 0; j < hl; j++) {
                acc += (double) w[j] * h[i * hl + j];
            }
            t.logits[i] = (float) acc;
        }
        t.last = h;
        return t;
    }

    private float[] layer(int l, float[] h, int n, Map<String, Tensor> params, Trace t) {
        int in = cfg.layerIn(l);
        int out = cfg.hidden[l];
        int r = cfg.rank;
        int nb = cfg.nBranches();
        float s = cfg.scale();
        t.input[l] = h;
        float[] pre = linear(h, n, in, frozen.weight[l].data(), frozen.bias[l].data(), out);
        t.pre[l] = pre;
        for (int k = 0; k < t.low[l].length; k++) {
            float[] a = params.get(Names.loraA(cfg, l, k)).data();
            float[] bm = params.get(Names.loraB(cfg, l, k)).data();
            float[] low = linear(h, n, in, a, null, r);
            float[] br = linear(low, n, r, bm, null, out);
            for (int i = 0; i < br.length; i++) {
                br[i] *= s;
            }
            t.low[l][k] = low;
            t.branch[l][k] = br;
        }
        float[] gh = linear(h, n, in, params.get(Names.gate(l, "w1")).data(), params.get(Names.gate(l, "b1")).data(),
                cfg.gateHidden);
        t.gateHidden[l] = gh;
        float[] q = new float[gh.length];
        for (int i = 0; i < gh.length; i++) {
            q[i] = gh[i] > 0 ? gh[i] : 0f;
        }
        float[] g = linear(q, n, cfg.gateHidden, params.get(Names.gate(l, "w2")).data(),
                params.get(Names.gate(l, "b2")).data(), nb);
        float[] w = new float[g.length];
        for (int i = 0; i < n; i++) {
            if (cfg.paperGate) {
                double max = Double.NEGATIVE_INFINITY;
                for (int j = 0; j < nb; j++) {
                    max = Math.max(max, g[i * nb + j]);
                }
                double sum = 0;
                for (int j = 0; j < nb; j++) {
                    sum += Math.exp(g[i * nb + j] - max);
                }
                for (int j = 0; j < nb; j++) {
                    w[i * nb + j] = (float) (Math.exp(g[i * nb + j] - max) / sum);
                }
            } else {
                for (int j = 0; j < nb; j++) {
                    w[i * nb + j] = (float) (1.0 / (1.0 + Math.exp(-g[i * nb + j])));
                }
            }
        }
        t.weights[l] = w;
        float[] next = new float[n * out];
        int first = cfg.paperGate ? 1 : 0; // index of the user branch's weight
        for (int i = 0; i < n; i++) {
            for (int o = 0; o < out; o++) {
                float c = pre[i * out + o] > 0 ? pre[i * out + o] : 0f;
                double acc = cfg.paperGate ? (double) w[i * nb] * c : c;
                for (int k = 0; k < t.branch[l].length; k++) {
                    acc += (double) w[i * nb + first + k] * t.branch[l][k][i * out + o];
                }
                next[i * out + o] = (float) acc;
            }
        }
        return next;
    }

    /** y[n, out] = x[n, in] · Wᵀ + b, W stored [out, in] (torch layout); b may be null. */
    static float[] linear(float[] x, int n, int in, float[] w, float[] b, int out) {
        float[] y = new float[n * out];
        for (int i = 0; i < n; i++) {
            for (int o = 0; o < out; o++) {
                double acc = b != null ? b[o] : 0.0;
                int wo = o * in;
                int xi = i * in;
                for (int j = 0; j < in; j++) {
                    acc += (double) w[wo + j] * x[xi + j];
                }
                y[i * out + o] = (float) acc;
            }
        }
        return y;
    }
}
