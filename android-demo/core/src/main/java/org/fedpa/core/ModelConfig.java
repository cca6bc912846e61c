package org.fedpa.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/** Student architecture + adapter spec ({@code BackboneConfig} and {@code AdapterConfig}). */
public final class ModelConfig {
    public final int[] cardinalities; // per feature, incl. OOV code 0
    public final int nUserFeatures;
    public final int embeddingDim;
    public final int nSignalFeatures; // the last n features: statistic buckets, embedded at signalDim
    public final int signalDim;
    public final int[] hidden;
    public final List<String> groupAttributes;
    public final int[] groupCardinalities;
    public final int rank;
    public final double alpha;
    public final boolean paperGate; // false: residual mode
    public final int gateHidden;
    public final boolean privateUserEmbeddings;

    /** Every feature at {@code embeddingDim} (no narrow signal tail). */
    public ModelConfig(int[] cardinalities, int nUserFeatures, int embeddingDim, int[] hidden,
                       List<String> groupAttributes, int[] groupCardinalities, int rank, double alpha,
                       boolean paperGate, int gateHidden, boolean privateUserEmbeddings) {
        this(cardinalities, nUserFeatures, embeddingDim, 0, 4, hidden, groupAttributes, groupCardinalities, rank,
                alpha, paperGate, gateHidden, privateUserEmbeddings);
    }

    public ModelConfig(int[] cardinalities, int nUserFeatures, int embeddingDim, int nSignalFeatures, int signalDim,
                       int[] hidden, List<String> groupAttributes, int[] groupCardinalities, int rank, double alpha,
                       boolean paperGate, int gateHidden, boolean privateUserEmbeddings) {
        if (cardinalities.length == 0 || nUserFeatures < 0 || nUserFeatures > cardinalities.length
                || embeddingDim < 1 || hidden.length == 0 || rank < 1
                || nSignalFeatures < 0 || nSignalFeatures > cardinalities.length - nUserFeatures || signalDim < 1
                || groupAttributes.size() != groupCardinalities.length) {
            throw new IllegalArgumentException("inconsistent model config");
        }
        this.cardinalities = cardinalities;
        this.nUserFeatures = nUserFeatures;
        this.embeddingDim = embeddingDim;
        this.nSignalFeatures = nSignalFeatures;
        this.signalDim = signalDim;
        this.hidden = hidden;
        this.groupAttributes = Collections.unmodifiableList(new ArrayList<String>(groupAttributes));
        this.groupCardinalities = groupCardinalities;
        this.rank = rank;
        this.alpha = alpha;
        this.paperGate = paperGate;
        this.gateHidden = gateHidden;
        this.privateUserEmbeddings = privateUserEmbeddings;
    }

    static ModelConfig fromJson(JSONObject backbone, JSONObject adapter) throws JSONException, BundleException {
        List<String> attrs = new ArrayList<String>();
        JSONArray a = adapter.getJSONArray("group_attributes");
        for (int i = 0; i < a.length(); i++) {
            attrs.add(a.getString(i));
        }
        String mode = adapter.optString("gate_mode", "paper");
        if (!"paper".equals(mode) && !"residual".equals(mode)) {
            throw new BundleException("manifest adapter.gate_mode must be paper or residual, got " + mode);
        }
        try {
            return new ModelConfig(Manifest.ints(backbone.getJSONArray("cardinalities")),
                    backbone.getInt("n_user_features"), backbone.getInt("embedding_dim"),
                    backbone.optInt("n_signal_features", 0), backbone.optInt("signal_dim", 4),
                    Manifest.ints(backbone.getJSONArray("hidden")), attrs,
                    Manifest.ints(adapter.getJSONArray("group_cardinalities")), adapter.optInt("rank", 4),
                    adapter.optDouble("alpha", 8.0), "paper".equals(mode), adapter.optInt("gate_hidden", 8),
                    adapter.optBoolean("private_user_embeddings", false));
        } catch (IllegalArgumentException e) {
            throw new BundleException("manifest backbone/adapter: " + e.getMessage(), e);
        }
    }

    public int nFeatures() {
        return cardinalities.length;
    }

    /** Features embedded at {@code embeddingDim}: all but the signal tail. */
    public int nWideFeatures() {
        return cardinalities.length - nSignalFeatures;
    }

    /** Width of one feature's embedding. */
    public int dim(int feature) {
        return feature < nWideFeatures() ? embeddingDim : signalDim;
    }

    /** Rows of the wide table (one per code of the wide features). */
    public int wideRows() {
        int rows = 0;
        for (int f = 0; f < nWideFeatures(); f++) {
            rows += cardinalities[f];
        }
        return rows;
    }

    /** Rows of the signal table (one per code of the signal features). */
    public int signalRows() {
        int rows = 0;
        for (int f = nWideFeatures(); f < cardinalities.length; f++) {
            rows += cardinalities[f];
        }
        return rows;
    }

    public int inputDim() {
        return nWideFeatures() * embeddingDim + nSignalFeatures * signalDim;
    }

    public int nLayers() {
        return hidden.length;
    }

    public int layerIn(int l) {
        return l == 0 ? inputDim() : hidden[l - 1];
    }

    public int nBranches() {
        return paperGate ? 2 + groupAttributes.size() : 1 + groupAttributes.size();
    }

    /** LoRA output scale alpha / r (peft convention), as float32 like torch. */
    public float scale() {
        return (float) (alpha / rank);
    }
}
