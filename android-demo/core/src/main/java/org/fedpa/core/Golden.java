package org.fedpa.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * The bundle's golden vectors ({@code golden.json}, {@code fedpa.runtime.golden}) replayed on the
 * pure-Java engine: a few inference cases and one SGD step from the golden personalisation,
 * each compared within {@code atol + rtol·|expected|}. The app runs this once per installed
 * bundle, so a phone never ranks with an engine that disagrees with the exported programs.
 *
 * <p>The golden personalisation is not stored (format 2): it is the bundle's initial tensors for
 * {@code groups} plus {@link #perturbation}, an integer hash this class computes bit for bit as
 * Python's {@code fedpa.runtime.golden.perturbation} does.
 */
public final class Golden {
    /** The golden.json format this engine reads (Python's {@code GOLDEN_FORMAT_VERSION}). */
    public static final int FORMAT_VERSION = 2;

    /** One comparison. */
    public static final class Check {
        public final String name;
        public final double maxAbsError;
        public final boolean ok;

        Check(String name, double maxAbsError, boolean ok) {
            this.name = name;
            this.maxAbsError = maxAbsError;
            this.ok = ok;
        }

        @Override
        public String toString() {
            return (ok ? "ok   " : "FAIL ") + name + " (max |error| " + maxAbsError + ")";
        }
    }

    private Golden() {
    }

    /** Replay {@code golden.json} of the bundle on {@code model}; every check, passed or not. */
    public static List<Check> replay(Model model) throws BundleException {
        JSONObject g = read(model.bundle());
        try {
            learnItemVectors(g, model.engine().itemVectors(), model.manifest().config);
            return replay(model, g);
        } catch (JSONException e) {
            throw new BundleException("golden.json is malformed: " + e.getMessage(), e);
        }
    }

    /**
     * Replay {@code golden.json} through any {@link ModelRuntime} (the one the app will rank and
     * train with, e.g. ExecuTorch): the inference cases by {@code score}, then one {@code step}
     * from the golden personalisation, checked by its loss, every updated tensor
     * ({@code start - lr * gradient}, which checks each gradient scaled by lr) and the loss after.
     * A runtime exposes no gradients, so they are not compared one by one as in
     * {@link #replay(Model)}.
     */
    public static List<Check> replay(Bundle bundle, ModelRuntime runtime) throws FedPAException {
        return replay(bundle, runtime, null);
    }

    /**
     * As {@link #replay(Bundle, ModelRuntime)} for a runtime that embeds the item code from
     * {@code itemVectors} (the engine's; null when the bundle's programs hold the item rows): each
     * case's {@code item_vector} — the item table's exact values for its item codes — is taught first.
     */
    public static List<Check> replay(Bundle bundle, ModelRuntime runtime, ItemVectors itemVectors)
            throws FedPAException {
        JSONObject g = read(bundle);
        try {
            learnItemVectors(g, itemVectors, bundle.manifest().config);
            return replayRuntime(bundle, runtime, g);
        } catch (JSONException e) {
            throw new BundleException("golden.json is malformed: " + e.getMessage(), e);
        }
    }

    private static JSONObject read(Bundle bundle) throws BundleException {
        try {
            JSONObject g = new JSONObject(new String(Bundle.readFile(bundle.file("golden.json")), "UTF-8"));
            int version = g.optInt("format_version", -1);
            if (version != FORMAT_VERSION) {
                throw new BundleException("golden.json: format_version " + g.opt("format_version")
                        + " is not the supported " + FORMAT_VERSION
                        + (version == 1 ? " (written before the perturbation became a formula: rebuild the bundle)" : ""));
            }
            return g;
        } catch (java.io.IOException e) {
            throw new BundleException("golden.json: cannot read (" + e.getMessage() + ")", e);
        } catch (JSONException e) {
            throw new BundleException("golden.json is not valid JSON: " + e.getMessage(), e);
        }
    }

    private static List<Check> replayRuntime(Bundle bundle, ModelRuntime runtime, JSONObject g)
            throws JSONException, FedPAException {
        double atol = g.optDouble("atol", 1e-5);
        double rtol = g.optDouble("rtol", 1e-4);
        int nf = bundle.manifest().config.nFeatures();
        Map<String, Tensor> personalisation = personalisation(bundle, g);
        List<Check> checks = new ArrayList<Check>();
        JSONArray cases = g.getJSONArray("inference");
        for (int c = 0; c < cases.length(); c++) {
            JSONObject kase = cases.getJSONObject(c);
            float[] want = floats(kase.getJSONArray("logits"));
            float[] got = runtime.score(rows(kase.getJSONArray("x"), nf), want.length, Model.copy(personalisation));
            checks.add(compare("inference case " + c + " (" + want.length + " rows)", want, got, atol, rtol));
        }
        JSONObject t = g.getJSONObject("training");
        long[] x = rows(t.getJSONArray("x"), nf);
        float[] y = floats(t.getJSONArray("y"));
        float lr = (float) t.getDouble("lr");
        Map<String, Tensor> params = Model.copy(personalisation);
        float loss = runtime.step(x, y, y.length, params, lr);
        checks.add(compare("training loss", new float[] {(float) t.getDouble("loss")}, new float[] {loss}, atol, rtol));
        Map<String, Tensor> grads = tensors(t.getJSONObject("gradients"));
        for (Map.Entry<String, Tensor> e : grads.entrySet()) {
            Tensor start = personalisation.get(e.getKey());
            if (start == null || params.get(e.getKey()) == null) {
                checks.add(new Check("SGD update " + e.getKey() + " (not a personalisation tensor here)", Double.NaN, false));
                continue;
            }
            float[] grad = e.getValue().data();
            float[] want = new float[grad.length];
            for (int i = 0; i < want.length && i < start.data().length; i++) {
                want[i] = start.data()[i] - lr * grad[i];
            }
            checks.add(compare("SGD update " + e.getKey(), want, params.get(e.getKey()).data(), atol, rtol));
        }
        float after = Trainer.bceLoss(runtime.score(x, y.length, params), y);
        checks.add(compare("loss after one SGD step", new float[] {(float) t.getDouble("loss_after")},
                new float[] {after}, atol, rtol));
        return checks;
    }

    private static List<Check> replay(Model model, JSONObject g) throws JSONException, BundleException {
        double atol = g.optDouble("atol", 1e-5);
        double rtol = g.optDouble("rtol", 1e-4);
        int nf = model.manifest().config.nFeatures();
        Map<String, Tensor> personalisation = personalisation(model.bundle(), g);
        List<Check> checks = new ArrayList<Check>();
        JSONArray cases = g.getJSONArray("inference");
        for (int c = 0; c < cases.length(); c++) {
            JSONObject kase = cases.getJSONObject(c);
            long[] x = rows(kase.getJSONArray("x"), nf);
            float[] want = floats(kase.getJSONArray("logits"));
            float[] got = model.engine().score(x, want.length, personalisation);
            checks.add(compare("inference case " + c + " (" + want.length + " rows)", want, got, atol, rtol));
        }
        JSONObject t = g.getJSONObject("training");
        long[] x = rows(t.getJSONArray("x"), nf);
        float[] y = floats(t.getJSONArray("y"));
        Map<String, Tensor> params = Model.copy(personalisation);
        Trainer.Result r = model.trainer().gradients(x, y, y.length, params);
        checks.add(compare("training loss", new float[] {(float) t.getDouble("loss")}, new float[] {r.loss}, atol, rtol));
        Map<String, Tensor> grads = tensors(t.getJSONObject("gradients"));
        for (Map.Entry<String, Tensor> e : grads.entrySet()) {
            float[] got = r.gradients.get(e.getKey());
            if (got == null) {
                checks.add(new Check("gradient " + e.getKey() + " (not a personalisation tensor here)", Double.NaN, false));
                continue;
            }
            checks.add(compare("gradient " + e.getKey(), e.getValue().data(), got, atol, rtol));
        }
        float lr = (float) t.getDouble("lr");
        List<String> names = new ArrayList<String>(params.keySet());
        model.trainer().step(x, y, y.length, params, names, lr);
        for (Map.Entry<String, Tensor> e : grads.entrySet()) {
            float[] start = personalisation.get(e.getKey()).data();
            float[] grad = e.getValue().data();
            float[] want = new float[start.length];
            for (int i = 0; i < want.length; i++) {
                want[i] = start[i] - lr * grad[i];
            }
            Tensor now = params.get(e.getKey());
            if (now != null) {
                checks.add(compare("SGD update " + e.getKey(), want, now.data(), atol, rtol));
            }
        }
        float after = Trainer.bceLoss(model.engine().score(x, y.length, params), y);
        checks.add(compare("loss after one SGD step", new float[] {(float) t.getDouble("loss_after")},
                new float[] {after}, atol, rtol));
        return checks;
    }

    static Check compare(String name, float[] want, float[] got, double atol, double rtol) {
        if (want.length != got.length) {
            return new Check(name + ": " + got.length + " values, expected " + want.length, Double.NaN, false);
        }
        double worst = 0;
        boolean ok = true;
        for (int i = 0; i < want.length; i++) {
            double err = Math.abs((double) want[i] - got[i]);
            worst = Math.max(worst, err);
            ok &= err <= atol + rtol * Math.abs(want[i]); // NaN fails
        }
        return new Check(name, worst, ok);
    }

    /** Every case's (and the training batch's) item vectors, by the item codes of its rows. */
    private static void learnItemVectors(JSONObject g, ItemVectors sink, ModelConfig cfg)
            throws JSONException, BundleException {
        if (!cfg.takesItemVectors()) {
            return;
        }
        if (sink == null) {
            throw new BundleException("the bundle's programs take item vectors, but the runtime has none to learn");
        }
        List<JSONObject> entries = new ArrayList<JSONObject>();
        JSONArray cases = g.getJSONArray("inference");
        for (int c = 0; c < cases.length(); c++) {
            entries.add(cases.getJSONObject(c));
        }
        entries.add(g.getJSONObject("training"));
        int nf = cfg.nFeatures();
        for (JSONObject e : entries) {
            if (!e.has("item_vector")) {
                throw new BundleException("golden.json: a case has no item_vector, but the bundle's programs take one");
            }
            JSONObject holder = new JSONObject();
            holder.put("item_vector", e.getJSONObject("item_vector"));
            float[] v = tensors(holder).get("item_vector").data();
            long[] x = rows(e.getJSONArray("x"), nf);
            int n = x.length / nf;
            int d = sink.dim();
            if (v.length != n * d) {
                throw new BundleException("golden.json: item_vector of " + v.length + " values for " + n + " rows");
            }
            for (int i = 0; i < n; i++) {
                sink.put(x[i * nf + cfg.itemColumn], java.util.Arrays.copyOfRange(v, i * d, (i + 1) * d));
            }
        }
    }

    /**
     * The golden personalisation: the bundle's initial tensors for {@code groups} (shared state for
     * the group tensors and the gate, private_init for the rest), in the inference program's input
     * order, each plus {@code scale · perturbation(seed, its position)} in float32.
     */
    static Map<String, Tensor> personalisation(Bundle bundle, JSONObject g) throws JSONException, BundleException {
        Manifest m = bundle.manifest();
        Map<String, Integer> groups = new LinkedHashMap<String, Integer>();
        JSONObject go = g.getJSONObject("groups");
        Iterator<?> keys = go.keys();
        while (keys.hasNext()) {
            String a = (String) keys.next();
            groups.put(a, go.getInt(a));
        }
        JSONObject p = g.getJSONObject("perturbation");
        long seed = p.getLong("seed");
        if (seed < 0 || seed > 0xFFFFFFFFL) {
            throw new BundleException("golden.json: perturbation seed " + seed + " is not a 32-bit unsigned integer");
        }
        float scale = (float) p.getDouble("scale");
        Map<String, Tensor> start;
        try {
            start = SharedState.toParams(m, bundle.sharedState(), groups);
        } catch (PayloadException e) {
            throw new BundleException("golden.json: groups " + groups + ": " + e.getMessage(), e);
        }
        start.putAll(bundle.privateInit());
        Map<String, Tensor> out = new LinkedHashMap<String, Tensor>();
        JSONArray inputs = m.programs.getJSONObject("inference").getJSONArray("inputs");
        int index = 0;
        for (int i = 0; i < inputs.length(); i++) {
            JSONObject in = inputs.getJSONObject(i);
            String group = in.getString("group");
            if (!"private".equals(group) && !"group".equals(group) && !"gate".equals(group)) {
                continue;
            }
            String name = in.getString("name");
            Tensor t = start.get(name);
            if (t == null) {
                throw new BundleException("golden.json: the bundle has no initial tensor " + name + " for groups " + groups);
            }
            float[] data = t.data().clone();
            float[] noise = perturbation((int) seed, index++, data.length);
            for (int j = 0; j < data.length; j++) {
                data[j] = data[j] + noise[j] * scale;
            }
            out.put(name, Tensor.of(data, t.shape()));
        }
        return out;
    }

    /**
     * {@code n} floats in [-1, 1) for the personalisation tensor at input position {@code index}:
     * {@link CounterRng#uniform} (docs/export.md), as Python's {@code fedpa.runtime.golden.perturbation}.
     */
    public static float[] perturbation(int seed, int index, int n) {
        return CounterRng.uniform(seed, index, n);
    }

    private static Map<String, Tensor> tensors(JSONObject o) throws JSONException, BundleException {
        Map<String, Tensor> out = new LinkedHashMap<String, Tensor>();
        Iterator<?> keys = o.keys();
        while (keys.hasNext()) {
            String name = (String) keys.next();
            JSONObject e = o.getJSONObject(name);
            int[] shape = Manifest.ints(e.getJSONArray("shape"));
            byte[] raw = base64(e.getString("b64"));
            int n = Tensor.numel(shape);
            if (raw.length != 4 * n) {
                throw new BundleException("golden tensor " + name + ": " + raw.length + " bytes do not fit its shape");
            }
            float[] data = new float[n];
            ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(data);
            out.put(name, Tensor.of(data, shape));
        }
        return out;
    }

    private static long[] rows(JSONArray a, int nf) throws JSONException {
        long[] x = new long[a.length() * nf];
        for (int i = 0; i < a.length(); i++) {
            JSONArray row = a.getJSONArray(i);
            for (int f = 0; f < nf; f++) {
                x[i * nf + f] = row.getLong(f);
            }
        }
        return x;
    }

    private static float[] floats(JSONArray a) throws JSONException {
        float[] out = new float[a.length()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) a.getDouble(i);
        }
        return out;
    }

    /** RFC 4648 base64 (java.util.Base64 is not in Android's API 23 class library). */
    static byte[] base64(String s) throws BundleException {
        int[] val = new int[128];
        java.util.Arrays.fill(val, -1);
        String alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 64; i++) {
            val[alphabet.charAt(i)] = i;
        }
        int len = s.length();
        while (len > 0 && s.charAt(len - 1) == '=') {
            len--;
        }
        if (len % 4 == 1) {
            throw new BundleException("invalid base64 length " + s.length());
        }
        byte[] out = new byte[len * 3 / 4];
        int acc = 0;
        int bits = 0;
        int o = 0;
        for (int i = 0; i < len; i++) {
            char c = s.charAt(i);
            int v = c < 128 ? val[c] : -1;
            if (v < 0) {
                throw new BundleException("invalid base64 character '" + c + "'");
            }
            acc = (acc << 6) | v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                out[o++] = (byte) (acc >> bits);
            }
        }
        return out;
    }
}
