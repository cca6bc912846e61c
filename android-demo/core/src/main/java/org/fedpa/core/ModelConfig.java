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
    // The wide feature (the item code) whose embedding is the candidate's item vector, served by the
    // item table (manifest "item_vectors"); its rows are not in the embedding table. -1: none.
    public final int itemColumn;

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
        this(cardinalities, nUserFeatures, embeddingDim, nSignalFeatures, signalDim, hidden, groupAttributes,
                groupCardinalities, rank, alpha, paperGate, gateHidden, privateUserEmbeddings, -1);
    }

    /** With {@code itemColumn}: the wide feature embedded from the runtime item vector (-1: none). */
    public ModelConfig(int[] cardinalities, int nUserFeatures, int embeddingDim, int nSignalFeatures, int signalDim,
                       int[] hidden, List<String> groupAttributes, int[] groupCardinalities, int rank, double alpha,
                       boolean paperGate, int gateHidden, boolean privateUserEmbeddings, int itemColumn) {
        if (itemColumn < -1 || itemColumn >= cardinalities.length - nSignalFeatures) {
            throw new IllegalArgumentException("item_vectors column " + itemColumn + " is not a wide feature");
        }
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
        this.itemColumn = itemColumn;
    }

    static ModelConfig fromJson(JSONObject backbone, JSONObject adapter) throws JSONException, BundleException {
        return fromJson(backbone, adapter, -1);
    }

    /** As the manifest declares it; {@code itemColumn} from its {@code item_vectors} (-1: none). */
    static ModelConfig fromJson(JSONObject backbone, JSONObject adapter, int itemColumn)
            throws JSONException, BundleException {
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
                    adapter.optBoolean("private_user_embeddings", false), itemColumn);
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

    /** Rows of the wide table as shipped: without the item code's rows when they come as item vectors. */
    public int tableRows() {
        return wideRows() - (itemColumn >= 0 ? cardinalities[itemColumn] : 0);
    }

    /** Whether the programs take the candidates' item vectors (the item table serves them). */
    public boolean takesItemVectors() {
        return itemColumn >= 0;
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
