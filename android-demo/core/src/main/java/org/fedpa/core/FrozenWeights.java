package org.fedpa.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The student's frozen tensors: the embedding table (and the narrower signal-feature table when the
 * manifest declares {@code n_signal_features}), each hidden layer's W and b, the head.
 *
 * <p>A bundle carries them once, in {@code backbone.safetensors} ({@link #fromBackbone}): exactly
 * the tensors the manifest declares as the programs' {@code "frozen"} inputs, by parameter name
 * ({@code backbone.embedding.weight}, {@code backbone.layers.0.weight}, …), float32. Within the
 * engine they are found by name suffix ({@link #select}), so a state dict saved from the backbone
 * alone ({@code embedding.weight}) reads the same. Every shape is checked against the manifest's
 * architecture.
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
    /** Every tensor by parameter name, in the programs' input order (what an ExecuTorch program is fed). */
    public final Map<String, Tensor> byName;

    private FrozenWeights(Tensor embedding, Tensor signalEmbedding, Tensor[] weight, Tensor[] bias, Tensor headWeight,
                          Tensor headBias, Map<String, Tensor> byName) {
        this.byName = Collections.unmodifiableMap(byName);
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
        return new FrozenWeights(emb, sig, w, b, hw, hb, new LinkedHashMap<String, Tensor>(all));
    }

    /**
     * The contents of {@code backbone.safetensors}: names, shapes and dtype (float32) must be exactly
     * the inference program's {@code "frozen"} inputs in the manifest, else a BundleException naming
     * the tensor; then the architecture is checked as by {@link #select}.
     */
    public static FrozenWeights fromBackbone(Map<String, Tensor> tensors, Manifest manifest, String source)
            throws BundleException {
        Map<String, int[]> declared = declared(manifest, "inference");
        if (declared.isEmpty()) {
            throw new BundleException("manifest: the inference program declares no frozen inputs");
        }
        List<String> missing = new ArrayList<String>();
        for (String name : declared.keySet()) {
            if (!tensors.containsKey(name)) {
                missing.add(name);
            }
        }
        List<String> unknown = new ArrayList<String>();
        for (String name : tensors.keySet()) {
            if (!declared.containsKey(name)) {
                unknown.add(name);
            }
        }
        if (!missing.isEmpty() || !unknown.isEmpty()) {
            throw new BundleException(source + ": tensors differ from the programs' frozen inputs: missing " + missing
                    + ", unknown " + unknown);
        }
        Map<String, Tensor> ordered = new LinkedHashMap<String, Tensor>();
        for (Map.Entry<String, int[]> e : declared.entrySet()) {
            Tensor t = tensors.get(e.getKey());
            if (!Tensor.F32.equals(t.dtype())) {
                throw new BundleException(source + ": " + e.getKey() + " has dtype " + t.dtype() + ", the programs need F32");
            }
            if (!t.sameShape(e.getValue())) {
                throw new BundleException(source + ": " + e.getKey() + " has shape " + Arrays.toString(t.shape())
                        + ", the programs need " + Arrays.toString(e.getValue()));
            }
            ordered.put(e.getKey(), t);
        }
        return select(ordered, manifest.config, source);
    }

    /** A program's {@code "frozen"} inputs in the manifest: name → shape, in input order. */
    public static Map<String, int[]> declared(Manifest manifest, String program) throws BundleException {
        Map<String, int[]> out = new LinkedHashMap<String, int[]>();
        try {
            JSONArray inputs = manifest.programs.getJSONObject(program).getJSONArray("inputs");
            for (int i = 0; i < inputs.length(); i++) {
                JSONObject in = inputs.getJSONObject(i);
                if ("frozen".equals(in.optString("group"))) {
                    out.put(in.getString("name"), Manifest.ints(in.getJSONArray("shape")));
                }
            }
        } catch (JSONException e) {
            throw new BundleException("manifest: program '" + program + "' has malformed inputs: " + e.getMessage(), e);
        }
        return out;
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
