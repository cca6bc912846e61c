package org.fedpa.core;

import java.util.Arrays;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The student's frozen tensors: the embedding table (and the narrower signal-feature table when the
 * manifest declares {@code n_signal_features}), each hidden layer's W and b, the head.
 *
 * <p>They are found by name suffix, so the same code reads a state dict saved from the backbone
 * ({@code embedding.weight}, {@code layers.0.weight}), from the recommender
 * ({@code backbone.embedding.weight}) or the initializers of the bundle's ONNX program, whose
 * exporter prefixes the wrapper's attribute ({@code m.backbone.embedding.weight},
 * {@code m.layers.0.base.weight}). Every shape is checked against the manifest's architecture.
 */
public final class FrozenWeights {
    private static final Pattern EMBEDDING = Pattern.compile("(^|.*\\.)backbone\\.embedding\\.weight$|^embedding\\.weight$");
    private static final Pattern SIGNAL_EMBEDDING =
            Pattern.compile("(^|.*\\.)backbone\\.signal_embedding\\.weight$|^signal_embedding\\.weight$");
    private static final Pattern LAYER = Pattern.compile("(^|.*\\.)layers\\.(\\d+)(\\.base)?\\.(weight|bias)$");
    private static final Pattern HEAD = Pattern.compile("(^|.*\\.)head\\.(weight|bias)$");

    public final Tensor embedding; // [sum cardinalities of the wide features (but the item code's, see ModelConfig), d]
    public final Tensor signalEmbedding; // [sum cardinalities of the signal features, signal_dim], or null
    public final Tensor[] weight; // [layer] -> [out, in]
    public final Tensor[] bias; // [layer] -> [out]
    public final Tensor headWeight; // [1, h_L]
    public final Tensor headBias; // [1]

    private FrozenWeights(Tensor embedding, Tensor signalEmbedding, Tensor[] weight, Tensor[] bias, Tensor headWeight,
                          Tensor headBias) {
        this.embedding = embedding;
        this.signalEmbedding = signalEmbedding;
        this.weight = weight;
        this.bias = bias;
        this.headWeight = headWeight;
        this.headBias = headBias;
    }

    /** Pick the frozen tensors out of a name → tensor map; refuses missing or mis-shaped ones. */
    public static FrozenWeights select(Map<String, Tensor> all, ModelConfig cfg, String source) throws BundleException {
        int layers = cfg.nLayers();
        Tensor emb = null;
        Tensor sig = null;
        Tensor hw = null;
        Tensor hb = null;
        Tensor[] w = new Tensor[layers];
        Tensor[] b = new Tensor[layers];
        for (Map.Entry<String, Tensor> e : all.entrySet()) {
            String name = e.getKey();
            Tensor t = e.getValue();
            if (!Tensor.F32.equals(t.dtype())) {
                continue;
            }
            Matcher m;
            if (EMBEDDING.matcher(name).matches()) {
                emb = t;
            } else if (SIGNAL_EMBEDDING.matcher(name).matches()) {
                sig = t;
            } else if ((m = LAYER.matcher(name)).matches() && !name.contains(".gate.") && !name.contains("lora_")) {
                int l = Integer.parseInt(m.group(2));
                if (l < layers) {
                    if ("weight".equals(m.group(4))) {
                        w[l] = t;
                    } else {
                        b[l] = t;
                    }
                }
            } else if ((m = HEAD.matcher(name)).matches()) {
                if ("weight".equals(m.group(2))) {
                    hw = t;
                } else {
                    hb = t;
                }
            }
        }
        check(emb, "embedding.weight", source, cfg.tableRows(), cfg.embeddingDim);
        if (cfg.nSignalFeatures > 0) {
            check(sig, "signal_embedding.weight", source, cfg.signalRows(), cfg.signalDim);
        } else {
            sig = null;
        }
        for (int l = 0; l < layers; l++) {
            check(w[l], "layers." + l + ".weight", source, cfg.hidden[l], cfg.layerIn(l));
            check(b[l], "layers." + l + ".bias", source, cfg.hidden[l]);
        }
        check(hw, "head.weight", source, 1, cfg.hidden[layers - 1]);
        check(hb, "head.bias", source, 1);
        return new FrozenWeights(emb, sig, w, b, hw, hb);
    }

    private static void check(Tensor t, String what, String source, int... shape) throws BundleException {
        if (t == null) {
            throw new BundleException(source + ": frozen tensor " + what + " not found");
        }
        if (!t.sameShape(shape)) {
            throw new BundleException(source + ": frozen tensor " + what + " has shape " + Arrays.toString(t.shape())
                    + ", the manifest's architecture needs " + Arrays.toString(shape));
        }
    }
}
