package org.fedpa.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * The bundle's {@code manifest.json} (schema: {@code fedpa/manifest.py}), reduced to what a
 * device needs: architecture, feature schema, shared-state layout, privacy defaults and hashes.
 */
public final class Manifest {
    // 3: the initial bank is a law (shared_state.initial) plus the stored tensors;
    // 2: frozen weights and item vectors are program inputs
    public static final int FORMAT_VERSION = 3;
    /** The one initial-bank law ({@code fedpa.state.BANK_LAW}). */
    public static final String BANK_LAW = "counter-uniform";

    /** One tensor of the shared bank ({@code fedpa.state.TensorSpec}). */
    public static final class SharedTensor {
        public final String name; // wire name, e.g. layers.0.groups.age.lora_A@3
        public final String param; // model parameter it loads into
        public final int[] shape;
        public final String role; // "gate" or "group"
        public final String attribute; // null for gate tensors
        public final int value; // group value code, -1 for gate tensors

        SharedTensor(String name, String param, int[] shape, String role, String attribute, int value) {
            this.name = name;
            this.param = param;
            this.shape = shape;
            this.role = role;
            this.attribute = attribute;
            this.value = value;
        }
    }

    /**
     * How the bundle's initial bank follows from a seed and its stored tensors ({@code fedpa.state.InitialBank}):
     * a drawn parameter's tensor at bank position k is {@code bound * CounterRng.uniform(seed, k)}; every
     * other parameter is stored once under its name in {@code shared_state.safetensors}.
     */
    public static final class InitialBank {
        public final int seed; // unsigned 32-bit value held in an int
        public final Map<String, Float> drawn; // parameter name -> bound

        InitialBank(int seed, Map<String, Float> drawn) {
            this.seed = seed;
            this.drawn = drawn;
        }
    }

    /** One categorical input column ({@code fedpa.data.schema.CategoricalFeature}). */
    public static final class Feature {
        /** Where a running device gets a column's code ({@code fedpa.data.schema.FEATURE_SOURCES}). */
        public static final String USER = "user";
        public static final String ITEM = "item"; // the item's own feature table (the catalogue)
        public static final String ITEM_TABLE = "item_table"; // the aggregator's item table, per candidate
        public static final String HISTORY = "history"; // the device's own earlier interactions

        public final String name;
        public final String side; // "user" or "item"
        public final String source; // USER, ITEM, ITEM_TABLE or HISTORY
        public final String of; // item_table/history: the group attribute or item field a statistic is over
        public final List<String> vocabulary;
        public final int cardinality;

        Feature(String name, String side, List<String> vocabulary, int cardinality) {
            this(name, side, side, "", vocabulary, cardinality);
        }

        Feature(String name, String side, String source, String of, List<String> vocabulary, int cardinality) {
            this.name = name;
            this.side = side;
            this.source = source;
            this.of = of;
            this.vocabulary = vocabulary;
            this.cardinality = cardinality;
        }

        /** Human-readable label of a code (0 is OOV/unknown). */
        public String label(long code) {
            if (code >= 1 && code <= vocabulary.size()) {
                return vocabulary.get((int) code - 1);
            }
            return code == 0 ? "?" : "#" + code;
        }
    }

    public final String json;
    public final String modelId;
    public final int modelVersion;
    public final ModelConfig config;
    public final List<Feature> features;
    public final List<SharedTensor> sharedTensors;
    public final InitialBank initialBank;
    public final Map<String, int[]> privateTensors; // parameter name -> shape
    public final Privacy privacy;
    public final Map<String, String> fileSha256;
    public final Map<String, Long> fileSize;
    public final JSONObject programs;
    public final int itemVectorDim; // d of the item vectors the programs take (0: none)

    private Manifest(String json, JSONObject o) throws JSONException, BundleException {
        this.json = json;
        this.modelId = o.getString("model_id");
        this.modelVersion = o.getInt("model_version");
        JSONObject vectors = o.optJSONObject("item_vectors"); // absent or null: the programs embed every code
        this.itemVectorDim = vectors == null ? 0 : vectors.getInt("dim");
        this.config = ModelConfig.fromJson(o.getJSONObject("backbone"), o.getJSONObject("adapter"),
                vectors == null ? -1 : vectors.getInt("column"));
        if (vectors != null && itemVectorDim != config.embeddingDim) {
            throw new BundleException("manifest item_vectors.dim " + itemVectorDim + " != the embedding dim "
                    + config.embeddingDim);
        }
        this.features = parseFeatures(o.optJSONObject("feature_schema"));
        JSONObject sharedState = o.getJSONObject("shared_state");
        this.sharedTensors = sharedTensors(sharedState);
        this.initialBank = initialBank(sharedState, sharedTensors);
        Map<String, int[]> priv = new LinkedHashMap<String, int[]>();
        JSONArray pt = o.getJSONArray("private_tensors");
        for (int i = 0; i < pt.length(); i++) {
            JSONObject t = pt.getJSONObject(i);
            priv.put(t.getString("name"), ints(t.getJSONArray("shape")));
        }
        this.privateTensors = Collections.unmodifiableMap(priv);
        this.privacy = Privacy.fromJson(o.optJSONObject("privacy"));
        this.fileSha256 = new LinkedHashMap<String, String>();
        this.fileSize = new LinkedHashMap<String, Long>();
        JSONObject files = o.optJSONObject("files");
        if (files != null) {
            Iterator<String> names = files.keys();
            while (names.hasNext()) {
                String name = names.next();
                JSONObject entry = files.getJSONObject(name);
                fileSha256.put(name, entry.getString("sha256"));
                fileSize.put(name, entry.getLong("size"));
            }
        }
        JSONObject progs = o.optJSONObject("programs");
        this.programs = progs != null ? progs : new JSONObject();
    }

    /** Parse manifest JSON; any schema problem is a BundleException naming the field. */
    public static Manifest parse(String json) throws BundleException {
        JSONObject o;
        try {
            o = new JSONObject(json);
        } catch (JSONException e) {
            throw new BundleException("manifest.json is not valid JSON: " + e.getMessage(), e);
        }
        int version = o.optInt("format_version", -1);
        if (version == 1 || version == 2) {
            throw new BundleException("manifest.json has format_version " + version + ", a bundle "
                    + (version == 1 ? "whose programs hold their own weights" : "that ships its whole initial bank")
                    + "; this app reads format_version " + FORMAT_VERSION + ": rebuild it with fedpa-export build");
        }
        if (version != FORMAT_VERSION) {
            throw new BundleException("manifest.json has unknown format_version " + o.opt("format_version")
                    + "; this app reads format_version " + FORMAT_VERSION);
        }
        try {
            return new Manifest(json, o);
        } catch (JSONException e) {
            throw new BundleException("manifest.json does not match the schema: " + e.getMessage(), e);
        }
    }

    /** The shared tensors a device with these group values downloads and updates. */
    public List<SharedTensor> sharedFor(Map<String, Integer> groups) throws PayloadException {
        checkGroups(groups);
        List<SharedTensor> out = new ArrayList<SharedTensor>();
        for (SharedTensor t : sharedTensors) {
            if ("gate".equals(t.role) || groups.get(t.attribute) == t.value) {
                out.add(t);
            }
        }
        return out;
    }

    /** Refuse group maps that do not name exactly the grouping attributes with in-range values. */
    public void checkGroups(Map<String, Integer> groups) throws PayloadException {
        List<String> attrs = config.groupAttributes;
        if (groups.size() != attrs.size() || !groups.keySet().containsAll(attrs)) {
            throw new PayloadException("groups must name exactly the attributes " + attrs + ", got " + groups.keySet());
        }
        for (int k = 0; k < attrs.size(); k++) {
            int v = groups.get(attrs.get(k));
            if (v < 0 || v >= config.groupCardinalities[k]) {
                throw new PayloadException("group value " + v + " of '" + attrs.get(k) + "' out of range 0.."
                        + (config.groupCardinalities[k] - 1));
            }
        }
    }

    /** Column index of a feature by name, or -1. */
    public int featureIndex(String name) {
        for (int i = 0; i < features.size(); i++) {
            if (features.get(i).name.equals(name)) {
                return i;
            }
        }
        return -1;
    }

    /** Columns of {@code x} whose feature comes from {@code source} ({@link Feature#USER}, ...), in order. */
    public int[] positions(String source) {
        int n = 0;
        for (Feature f : features) {
            n += f.source.equals(source) ? 1 : 0;
        }
        int[] out = new int[n];
        for (int i = 0, k = 0; i < features.size(); i++) {
            if (features.get(i).source.equals(source)) {
                out[k++] = i;
            }
        }
        return out;
    }

    /** The {@code feature_schema} object as written in the manifest (a fresh copy: JSONObject is mutable). */
    public JSONObject featureSchema() throws BundleException {
        try {
            JSONObject schema = new JSONObject(json).optJSONObject("feature_schema");
            if (schema == null) {
                throw new BundleException("manifest.json has no feature_schema");
            }
            return schema;
        } catch (JSONException e) {
            throw new BundleException("manifest.json is not valid JSON: " + e.getMessage(), e);
        }
    }

    /** The bank's tensors ({@code shared_state.tensors}), in manifest order. */
    static List<SharedTensor> sharedTensors(JSONObject sharedState) throws JSONException {
        List<SharedTensor> shared = new ArrayList<SharedTensor>();
        JSONArray tensors = sharedState.getJSONArray("tensors");
        for (int i = 0; i < tensors.length(); i++) {
            JSONObject t = tensors.getJSONObject(i);
            String role = t.getString("role");
            shared.add(new SharedTensor(t.getString("name"), t.getString("param"), ints(t.getJSONArray("shape")), role,
                    "group".equals(role) ? t.getString("attribute") : null,
                    "group".equals(role) ? t.getInt("value") : -1));
        }
        return Collections.unmodifiableList(shared);
    }

    /** {@code shared_state.initial}, checked as Python's pydantic model checks it. */
    static InitialBank initialBank(JSONObject sharedState, List<SharedTensor> tensors)
            throws JSONException, BundleException {
        JSONObject o = sharedState.optJSONObject("initial");
        if (o == null) {
            throw new BundleException("manifest.json: shared_state.initial (the initial bank's seed and drawn "
                    + "tensors) is required");
        }
        String law = o.optString("law", BANK_LAW);
        if (!BANK_LAW.equals(law)) {
            throw new BundleException("manifest.json: shared_state.initial.law '" + law + "' is unknown; this app "
                    + "knows '" + BANK_LAW + "'");
        }
        long seed = o.getLong("seed");
        if (seed < 0 || seed > 0xFFFFFFFFL) {
            throw new BundleException("manifest.json: shared_state.initial.seed " + seed
                    + " is not a 32-bit unsigned integer");
        }
        java.util.Set<String> params = new java.util.HashSet<String>();
        for (SharedTensor t : tensors) {
            params.add(t.param);
        }
        Map<String, Float> drawn = new LinkedHashMap<String, Float>();
        JSONObject d = o.getJSONObject("drawn");
        Iterator<String> names = d.keys();
        while (names.hasNext()) {
            String param = names.next();
            double bound = d.getDouble(param);
            if (!(bound > 0) || Double.isInfinite(bound) || (double) (float) bound != bound) {
                throw new BundleException("manifest.json: drawn bound of '" + param
                        + "' must be a positive float32 value, got " + bound);
            }
            if (!params.contains(param)) {
                throw new BundleException("manifest.json: shared_state.initial.drawn names parameter '" + param
                        + "' the bank does not hold");
            }
            drawn.put(param, (float) bound);
        }
        return new InitialBank((int) seed, Collections.unmodifiableMap(drawn));
    }

    private static List<Feature> parseFeatures(JSONObject schema) throws JSONException, BundleException {
        List<Feature> out = new ArrayList<Feature>();
        if (schema == null) {
            return out;
        }
        JSONArray feats = schema.getJSONArray("features");
        for (int i = 0; i < feats.length(); i++) {
            JSONObject f = feats.getJSONObject(i);
            List<String> vocab = new ArrayList<String>();
            JSONArray v = f.optJSONArray("vocabulary");
            for (int j = 0; v != null && j < v.length(); j++) {
                vocab.add(v.getString(j));
            }
            JSONArray edges = f.optJSONArray("bucket_edges");
            int hash = f.optInt("hash_buckets", 0);
            int coded = f.optInt("n_codes", 0); // codes 1..n_codes arrive ready-made (the item table's item code)
            int card = coded > 0 ? coded + 1 : hash > 0 ? hash + 1 : edges != null ? edges.length() + 2 : vocab.size() + 1;
            String side = f.getString("side");
            String source = f.isNull("source") ? side : f.optString("source", side); // pre-issue-14 manifests: the side
            if (!Feature.USER.equals(source) && !Feature.ITEM.equals(source) && !Feature.ITEM_TABLE.equals(source)
                    && !Feature.HISTORY.equals(source)) {
                throw new BundleException("feature '" + f.getString("name") + "' has unknown source '" + source
                        + "'; this app knows user, item, item_table and history");
            }
            out.add(new Feature(f.getString("name"), side, source, f.optString("of", ""),
                    Collections.unmodifiableList(vocab), card));
        }
        return Collections.unmodifiableList(out);
    }

    static int[] ints(JSONArray a) throws JSONException {
        int[] out = new int[a.length()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.getInt(i);
        }
        return out;
    }
}
