package org.fedpa.core;

import java.io.File;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * A phone's FedPA client (the Java twin of {@code edge.device.Device}): register, download and
 * verify the bundle, rank the feed, record taps and skips, and run a round —
 * fetch the gate + this user's group adapters, train them and the private adapter locally
 * (a run that diverged is discarded: {@link DivergedRun}), clip + noise the shared deltas, stage
 * the upload in the store (epsilon charged once), send it.
 *
 * <p>Not thread-safe: the app calls it from one background thread at a time.
 */
public final class FedPAClient {
    /** Where a long operation is, for a progress bar. */
    public interface Progress {
        void update(String message, double fraction);
    }

    private static final Progress SILENT = new Progress() {
        @Override
        public void update(String message, double fraction) {
        }
    };

    /** What a round did. */
    public static final class RoundResult {
        public String status = "skipped"; // accepted | stale | refused | skipped
        public int examples;
        public float lossBefore = Float.NaN;
        public float lossAfter = Float.NaN;
        public double aucBefore = Double.NaN; // this user's AUC on its own labels, before/after local training
        public double aucAfter = Double.NaN;
        public int skippedSteps; // local steps not applied: non-finite loss or gradient
        public double meanLoss = Double.NaN; // mean loss of the applied local steps (what DivergedRun judges)
        public String discarded = ""; // why the local run diverged and was not used (DivergedRun); "" if used
        public double epsilon;
        public double clipNormBefore = Double.NaN;
        public String updateId;
        public int baseVersion = -1;
        public String detail = "";
    }

    private final LocalStore store;
    private final Random noise;
    private final TrainingConfig training;
    private final int timeoutMs;
    private DeviceState state;
    private Model model;
    private DeviceSignals signals; // of the open model: item-table rows and the on-device history
    private ModelRuntime.Factory runtimes = JavaRuntime.FACTORY;
    private java.security.PublicKey publisherKey; // the only key whose bundles are installed
    private boolean allowUnsigned;
    private DevicePolicy policy = DevicePolicy.defaults();

    /** Usage: {@code new FedPAClient(new LocalStore(dir), new SecureRandom(), TrainingConfig.defaults(), 15000)}. */
    public FedPAClient(LocalStore store, Random noise, TrainingConfig training, int timeoutMs) throws StoreException {
        this.store = store;
        this.noise = noise != null ? noise : new SecureRandom();
        this.training = training;
        this.timeoutMs = timeoutMs;
        this.state = store.loadState();
    }

    /** Run the student with another runtime (the Gradle app's ExecuTorch one); takes effect on next load. */
    public void setRuntimeFactory(ModelRuntime.Factory factory) {
        this.runtimes = factory;
        this.model = null;
        this.signals = null;
    }

    /**
     * Pin the publisher's key (the PEM text of {@code publisher.pub}): only bundles it signed are
     * installed. Null unpins (the app's Settings can clear the key); a bad key leaves the pin as it was.
     */
    public void setPublisherKey(String pem) throws BundleException {
        this.publisherKey = pem == null ? null : Signatures.publicKey(pem);
    }

    /** Install unsigned bundles when no key is pinned (development servers only). */
    public void setAllowUnsigned(boolean allow) {
        this.allowUnsigned = allow;
    }

    /** The device's own privacy floor and budget (default: epsilon 8 over the bundle's planned rounds). */
    public void setPolicy(DevicePolicy policy) {
        this.policy = policy;
    }

    public DevicePolicy policy() {
        return policy;
    }

    public DeviceState state() {
        return state;
    }

    public LocalStore store() {
        return store;
    }

    /** Point the device at a server/model; a change forgets the old registration and item rows (not the data). */
    public void configure(String serverUrl, String modelId) throws StoreException {
        if (!serverUrl.equals(state.serverUrl) || !modelId.equals(state.modelId)) {
            signals = null; // the cached item rows are that server's table for that model
            state.serverUrl = serverUrl;
            state.modelId = modelId;
            state.token = null;
            state.deviceId = null;
            store.saveState(state);
        }
    }

    public void setUserCodes(long[] codes) throws FedPAException {
        if (model != null && codes.length != model.manifest().config.nUserFeatures) {
            throw new PayloadException("user needs " + model.manifest().config.nUserFeatures + " feature codes, got "
                    + codes.length);
        }
        state.userCodes = codes.clone();
        store.saveState(state);
    }

    private ApiClient api() throws SyncException {
        return new ApiClient(state.serverUrl, state.token, timeoutMs);
    }

    // ------------------------------------------------------------------ setup

    /** The verified local model (opens and checks the bundle on first use). */
    public Model model() throws FedPAException {
        if (model == null) {
            if (!new File(store.bundleDir(), Bundle.MANIFEST).isFile()) {
                throw new BundleException("no model on this device yet: set the server in Settings and sync");
            }
            model = new Model(Bundle.open(store.bundleDir()), runtimes);
            if (state.userCodes == null || state.userCodes.length != model.manifest().config.nUserFeatures) {
                state.userCodes = Catalog.syntheticUser(model.manifest(), System.nanoTime());
                store.saveState(state);
            }
        }
        return model;
    }

    /** Register (once) and download + verify the bundle (once per model version). */
    public void setup(Progress progress) throws FedPAException {
        progress = progress != null ? progress : SILENT;
        if (publisherKey == null && !allowUnsigned) { // before any request: nothing is sent without a trust anchor
            throw new BundleException("no publisher key pinned: set the publisher's key (publisher.pub) in Settings");
        }
        ApiClient api = api();
        if (state.token == null) {
            progress.update("registering with " + api.baseUrl(), 0.02);
            JSONObject reg = api.register(state.modelId);
            state.deviceId = reg.optString("device_id");
            state.token = reg.optString("token");
            store.saveState(state);
        }
        progress.update("checking the model", 0.05);
        Manifest remote = Manifest.parse(api.manifest(state.modelId));
        boolean haveBundle = new File(store.bundleDir(), Bundle.MANIFEST).isFile();
        if (!haveBundle || state.modelVersion != remote.modelVersion) {
            Manifest installed = BundleInstaller.install(api, state.modelId, store, progress, publisherKey, policy);
            state.modelVersion = installed.modelVersion;
            model = null;
            signals = null;
            store.savePrivate(model().bundle().privateInit()); // a new model starts a new adapter
            store.saveState(state);
        }
    }

    // ------------------------------------------------------------------ serving

    /**
     * The open model's signal columns: the item-table client (rows cached per table version for
     * the life of this client) and the history from the store, caught up with the interaction log.
     */
    public DeviceSignals signals() throws FedPAException {
        Model mdl = model();
        if (signals == null) {
            ItemTableClient items = new ItemTableClient(new ItemTableClient.Connection() {
                @Override
                public ApiClient api() throws SyncException {
                    return FedPAClient.this.api();
                }
            }, state.modelId, mdl.manifest().modelVersion);
            signals = DeviceSignals.open(store, mdl.manifest(), items, state.userCodes);
            if (mdl.engine().itemVectors() != null) {
                signals.learnVectorsInto(mdl.engine().itemVectors());
            }
        }
        return signals;
    }

    /**
     * The program input {@code x} for these candidates, as the Python edge client builds it: the
     * user's codes, each item's feature codes, its item-table row (looked up by its id; unknown
     * items get the OOV row) and the history features from this phone's own interactions so far.
     */
    public long[] inputs(List<Catalog.Item> items) throws FedPAException {
        List<long[]> codes = new ArrayList<long[]>();
        List<String> ids = new ArrayList<String>();
        for (Catalog.Item it : items) {
            codes.add(it.codes);
            ids.add(it.key);
        }
        return signals().fill(state.userCodes, codes, ids, groups());
    }

    /**
     * The training rows: every stored interaction as it was scored when labelled, with the current
     * profile. For a bundle that takes item vectors, the ones not known yet (e.g. after a restart)
     * are looked up by the logged item ids (cached rows: usually no request).
     */
    public long[] trainingInputs(List<Interaction> log) throws FedPAException {
        List<long[]> items = new ArrayList<long[]>();
        List<String> ids = new ArrayList<String>();
        for (Interaction i : log) {
            items.add(i.itemCodes);
            ids.add(i.itemKey);
        }
        long[] x = model().rows(state.userCodes, items);
        ItemVectors vectors = model().engine().itemVectors();
        ModelConfig cfg = model().manifest().config;
        if (vectors != null && !vectors.covers(x, log.size(), cfg.nFeatures(), cfg.itemColumn)) {
            signals().learnVectors(ids);
        }
        return x;
    }

    public Map<String, Integer> groups() throws FedPAException {
        return SharedState.groupsOf(model().manifest(), state.userCodes);
    }

    /** Private adapter + gate + this user's group adapters, by parameter name (copies). */
    public Map<String, Tensor> personalisation() throws FedPAException {
        Manifest m = model().manifest();
        Map<String, Integer> groups = groups();
        Map<String, Tensor> priv = store.loadPrivate();
        if (priv == null) {
            priv = model().bundle().privateInit();
        }
        Map<String, Tensor> out = Model.copy(priv);
        out.putAll(SharedState.toParams(m, sharedWire(groups), groups));
        return out;
    }

    /** The last downloaded shared tensors if they are this user's groups, else the bundle's initial ones. */
    private Map<String, Tensor> sharedWire(Map<String, Integer> groups) throws FedPAException {
        SafeTensors cached = store.loadShared();
        Manifest m = model().manifest();
        if (cached != null && String.valueOf(m.modelVersion).equals(cached.metadata().get("model_version"))) {
            try {
                SharedState.validate(m, cached.tensors(), groups);
                return cached.tensors();
            } catch (PayloadException e) {
                // other groups (the user changed profile) or a different model: fall through
            }
        }
        return SharedState.slice(m, model().bundle().sharedState(), groups);
    }

    /** The top-k items for the local user, best first, with their click probabilities. */
    public List<Object[]> feed(List<Catalog.Item> items, int k) throws FedPAException {
        Model mdl = model();
        float[] logits = mdl.runtime().score(inputs(items), items.size(), personalisation());
        List<Object[]> out = new ArrayList<Object[]>();
        for (int i : mdl.topK(logits, k)) {
            out.add(new Object[] {items.get(i), 1.0 / (1.0 + Math.exp(-logits[i]))});
        }
        return out;
    }

    /**
     * Record a tap (1) or skip (0): the item's row as the model would score it now — its history
     * from the interactions before this one only — goes into the log, then into the history. The
     * timestamp is made strictly later than the previous interaction's, so no row ever sees one of
     * the same instant (the dataset pipeline's as-of rule).
     */
    public List<Interaction> label(Catalog.Item item, int label) throws FedPAException {
        DeviceSignals sig = signals();
        List<long[]> codes = new ArrayList<long[]>();
        codes.add(item.codes);
        List<String> ids = new ArrayList<String>();
        ids.add(item.key);
        long[] row = sig.fill(state.userCodes, codes, ids, groups());
        List<Interaction> log = store.loadInteractions();
        long last = log.isEmpty() ? Long.MIN_VALUE : log.get(log.size() - 1).timestamp;
        long ts = Math.max(System.currentTimeMillis(), last + 1);
        int nu = model().manifest().config.nUserFeatures;
        List<Interaction> all = store.addInteraction(new Interaction(item.key,
                java.util.Arrays.copyOfRange(row, nu, row.length), label, ts));
        sig.record(row, label);
        return all;
    }

    // ------------------------------------------------------------------ one round

    /** Resume a pending upload if there is one, else train and upload one update. */
    public RoundResult trainAndSync(Progress progress) throws FedPAException {
        progress = progress != null ? progress : SILENT;
        setup(progress);
        if (state.pendingNonce != null) {
            progress.update("resending the pending upload", 0.9);
            return sendPending(new RoundResult());
        }
        if (signals().needsItems()) { // before the feed is ranked again with this round's adapters
            progress.update("checking the item table", 0.07);
            signals().items().refresh(); // a newer table version drops the cached rows
        }
        RoundResult result = new RoundResult();
        List<Interaction> log = store.loadInteractions();
        if (log.isEmpty()) {
            result.detail = "no taps or skips yet: label a few items first";
            return result;
        }
        Model mdl = model();
        Manifest m = mdl.manifest();
        Privacy privacy = policy.apply(m.privacy); // the device's delta and budget, sigma and C checked
        double eps = privacy.checkBudget(state.uploads()); // every upload ever sent, each with its own sigma
        Map<String, Integer> groups = groups();
        progress.update("downloading the shared adapters", 0.3);
        ApiClient api = api();
        java.util.Set<String> attributes = new java.util.TreeSet<String>(groups.keySet());
        ApiClient.Response r = api.stateAll(state.modelId, attributes, null); // names none of our groups
        Map<String, Tensor> base = SharedState.slice(m, SafeTensors.decode(r.body).tensors(), groups);
        SharedState.validate(m, base, groups);
        int baseVersion = parseInt(r.header(Wire.STATE_VERSION_HEADER), -1);
        if (baseVersion < 0) {
            throw new SyncException(r.status, "bad_response", "the server's shared state came without a valid "
                    + Wire.STATE_VERSION_HEADER + " header (" + r.header(Wire.STATE_VERSION_HEADER) + "); cannot train on it");
        }
        Map<String, String> meta = new LinkedHashMap<String, String>();
        meta.put("state_version", String.valueOf(baseVersion));
        meta.put("model_version", String.valueOf(m.modelVersion));
        store.saveShared(base, meta);
        state.lastStateVersion = baseVersion;

        float[] y = new float[log.size()];
        for (int i = 0; i < log.size(); i++) {
            y[i] = log.get(i).label;
        }
        long[] x = trainingInputs(log);
        Map<String, Tensor> priv = store.loadPrivate();
        Map<String, Tensor> params = Model.copy(priv != null ? priv : mdl.bundle().privateInit());
        List<String> privateNames = new ArrayList<String>(params.keySet());
        params.putAll(SharedState.toParams(m, base, groups));
        Map<String, Tensor> start = Model.copy(params); // what the round keeps if the run diverges
        final Progress p = progress;
        Model.Fit fit = mdl.fit(x, y, params, training, state.roundsCompleted + state.refused, new Model.StepListener() {
            @Override
            public void step(int done, int total, float loss) {
                p.update(String.format(java.util.Locale.ROOT, "training: step %d/%d, loss %.4f", done, total, loss),
                        0.35 + 0.45 * done / total);
            }
        });
        String discarded = DivergedRun.reason(fit, params);
        if (discarded != null) {
            // Keep the previous adapters and send a zero change (edge.device does the same). Under LDP
            // it is still clipped and noised like any upload: the server cannot tell it apart (skipping
            // the upload would reveal a data-dependent event the accountant does not cover), and
            // epsilon is charged as usual.
            params = start;
            progress.update("local training diverged (" + discarded + "): previous adapters kept, zero update sent",
                    0.8);
        }
        Map<String, Tensor> deltas = SharedState.deltas(m, params, base, groups);
        Ldp.Result noised = Ldp.clipAndNoise(deltas, privacy, noise);
        String nonce = nonce();
        // example_count: a constant 1 (fedpa.privacy.EXAMPLE_COUNT_REPORT): the server learns nothing of how much we use the app
        byte[] body = SafeTensors.encode(noised.update, updateMeta(m, baseVersion, groups, 1, nonce, privacy, eps));
        Map<String, Tensor> newPrivate = new LinkedHashMap<String, Tensor>();
        for (String name : privateNames) {
            newPrivate.put(name, params.get(name));
        }
        state.pendingNonce = nonce;
        state.pendingBaseVersion = baseVersion;
        state.pendingExamples = log.size();
        state.uploadsCharged += 1;
        state.ledger.add(privacy.upload());
        state.epsilonSpent = eps;
        progress.update("uploading " + body.length + " bytes", 0.85);
        store.stagePending(body, newPrivate, state);
        result.lossBefore = fit.lossBefore;
        result.aucBefore = fit.aucBefore;
        // after a discarded run the adapters are the ones from before: so are their loss and AUC
        result.lossAfter = discarded != null ? fit.lossBefore : fit.lossAfter;
        result.aucAfter = discarded != null ? fit.aucBefore : fit.aucAfter;
        result.skippedSteps = fit.skippedSteps;
        result.meanLoss = fit.meanLoss;
        result.discarded = discarded != null ? discarded : "";
        result.clipNormBefore = noised.report.normBefore;
        return sendPending(result);
    }

    private RoundResult sendPending(RoundResult result) throws FedPAException {
        byte[] body = store.pendingBody();
        result.examples = state.pendingExamples;
        result.baseVersion = state.pendingBaseVersion;
        result.epsilon = state.epsilonSpent;
        try {
            JSONObject receipt = api().upload(state.modelId, body);
            result.updateId = receipt.optString("update_id", null);
            result.status = "accepted";
        } catch (SyncException e) {
            if (e.status() == 0 || e.status() >= 500 || e.status() == 429) {
                throw e; // kept pending: resent verbatim next time
            }
            boolean replayed = e.status() == 409 && Wire.REPLAYED_NONCE.equals(e.code()); // exact code, never the text
            if (replayed) {
                result.status = "accepted"; // our earlier attempt got through; only its answer was lost
            } else {
                boolean stale = e.status() == 409
                        && (Wire.STALE_BASE.equals(e.code()) || Wire.MODEL_VERSION_MISMATCH.equals(e.code()));
                result.status = stale ? "stale" : "refused";
                result.detail = e.getMessage();
                state.refused += 1;
                store.finishPending(false, state);
                return result;
            }
        }
        state.roundsCompleted += 1;
        store.finishPending(true, state);
        return result;
    }

    private static Map<String, String> updateMeta(Manifest m, int baseVersion, Map<String, Integer> groups, int examples,
                                                  String nonce, Privacy privacy, double eps) throws FedPAException {
        try {
            JSONObject p = new JSONObject();
            boolean none = "none".equals(privacy.mechanism);
            p.put("mechanism", privacy.mechanism);
            p.put("clip_norm", none ? Double.MAX_VALUE : privacy.clipNorm); // no bound: never claim one
            p.put("noise_multiplier", none ? 0.0 : privacy.noiseMultiplier);
            p.put("epsilon_spent", eps);
            p.put("delta", privacy.delta);
            JSONObject g = new JSONObject();
            for (Map.Entry<String, Integer> e : groups.entrySet()) {
                g.put(e.getKey(), e.getValue().intValue());
            }
            JSONObject o = new JSONObject();
            o.put("model_id", m.modelId);
            o.put("model_version", m.modelVersion);
            o.put("base_version", baseVersion);
            o.put("groups", g);
            o.put("example_count", examples);
            o.put("nonce", nonce);
            o.put("privacy", p);
            Map<String, String> meta = new LinkedHashMap<String, String>();
            meta.put(Wire.UPDATE_META_KEY, o.toString());
            return meta;
        } catch (JSONException e) {
            throw new PayloadException("cannot build update metadata: " + e.getMessage(), e);
        }
    }

    private static String nonce() {
        byte[] b = new byte[16];
        new SecureRandom().nextBytes(b);
        return Bundle.hex(b);
    }

    private static int parseInt(String s, int fallback) {
        try {
            return s == null ? fallback : Integer.parseInt(s.trim());
        } catch (NumberFormatException e) {
            return fallback;
        }
    }
}
