package org.fedpa.core;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Moving shared tensors between wire names ({@code layers.0.groups.g.lora_A@3}) and the model's
 * parameter names, for one device's groups ({@code fedpa.state.SharedStateSpec} in Java), and the
 * validation the server also applies: exactly this device's tensors, declared shapes, finite.
 */
public final class SharedState {
    private SharedState() {
    }

    /** The group values of a user: the codes of the grouping attributes among its features. */
    public static Map<String, Integer> groupsOf(Manifest manifest, long[] userCodes) throws PayloadException {
        Map<String, Integer> groups = new LinkedHashMap<String, Integer>();
        for (String attr : manifest.config.groupAttributes) {
            int col = manifest.featureIndex(attr);
            if (col < 0 || col >= userCodes.length) {
                throw new PayloadException("grouping attribute '" + attr + "' is not among the user's "
                        + userCodes.length + " feature codes");
            }
            groups.put(attr, (int) userCodes[col]);
        }
        manifest.checkGroups(groups);
        return groups;
    }

    /** Refuse anything but exactly this device's shared tensors with the declared shapes, finite. */
    public static void validate(Manifest manifest, Map<String, Tensor> wire, Map<String, Integer> groups)
            throws PayloadException {
        List<Manifest.SharedTensor> expected = manifest.sharedFor(groups);
        for (Manifest.SharedTensor t : expected) {
            Tensor v = wire.get(t.name);
            if (v == null) {
                throw new PayloadException("missing tensor '" + t.name + "' for groups " + groups);
            }
            checkTensor("tensor", t.name, v, t.shape);
        }
        if (wire.size() != expected.size()) {
            for (String name : wire.keySet()) {
                boolean known = false;
                for (Manifest.SharedTensor t : expected) {
                    known |= t.name.equals(name);
                }
                if (!known) {
                    throw new PayloadException("unexpected tensor '" + name + "' for groups " + groups);
                }
            }
        }
    }

    /** Wire names → parameter names (copies), for this device's groups. */
    public static Map<String, Tensor> toParams(Manifest manifest, Map<String, Tensor> wire, Map<String, Integer> groups)
            throws PayloadException {
        Map<String, Tensor> out = new LinkedHashMap<String, Tensor>();
        for (Manifest.SharedTensor t : manifest.sharedFor(groups)) {
            Tensor v = wire.get(t.name);
            if (v == null) {
                throw new PayloadException("missing tensor '" + t.name + "' for groups " + groups);
            }
            out.put(t.param, v.copy());
        }
        return out;
    }

    /** The wire-named slice of a full bank (e.g. the bundle's initial shared state) for these groups. */
    public static Map<String, Tensor> slice(Manifest manifest, Map<String, Tensor> bank, Map<String, Integer> groups)
            throws PayloadException {
        Map<String, Tensor> out = new LinkedHashMap<String, Tensor>();
        for (Manifest.SharedTensor t : manifest.sharedFor(groups)) {
            Tensor v = bank.get(t.name);
            if (v == null) {
                throw new PayloadException("shared bank lacks tensor '" + t.name + "'");
            }
            out.put(t.name, v);
        }
        return out;
    }

    /**
     * The full initial bank by wire name, in manifest order ({@code fedpa.state.SharedStateSpec.initial_bank}):
     * drawn parameters from the manifest's seed, the rest copied from {@code stored} (each parameter not
     * drawn, once, by parameter name). Stored tensors that are missing, unexpected, of another shape or
     * dtype, or not finite are refused, so a damaged file never becomes a bank.
     */
    public static Map<String, Tensor> initialBank(List<Manifest.SharedTensor> tensors, Manifest.InitialBank law,
                                                  Map<String, Tensor> stored) throws PayloadException {
        Map<String, int[]> expected = new LinkedHashMap<String, int[]>();
        for (Manifest.SharedTensor t : tensors) {
            if (!law.drawn.containsKey(t.param)) {
                expected.put(t.param, t.shape);
            }
        }
        List<String> missing = new java.util.ArrayList<String>();
        for (String p : expected.keySet()) {
            if (!stored.containsKey(p)) {
                missing.add(p);
            }
        }
        List<String> unknown = new java.util.ArrayList<String>();
        for (String p : stored.keySet()) {
            if (!expected.containsKey(p)) {
                unknown.add(p);
            }
        }
        if (!missing.isEmpty() || !unknown.isEmpty()) {
            throw new PayloadException("stored initial tensors do not match the manifest's shared_state: missing "
                    + missing + ", unexpected " + unknown + " (drawn: " + law.drawn.keySet() + ")");
        }
        for (Map.Entry<String, int[]> e : expected.entrySet()) {
            checkTensor("stored initial tensor", e.getKey(), stored.get(e.getKey()), e.getValue());
        }
        Map<String, Tensor> bank = new LinkedHashMap<String, Tensor>();
        for (int k = 0; k < tensors.size(); k++) {
            Manifest.SharedTensor t = tensors.get(k);
            Float bound = law.drawn.get(t.param);
            if (bound == null) {
                bank.put(t.name, stored.get(t.param).copy()); // a copy per group value
                continue;
            }
            float[] u = CounterRng.uniform(law.seed, k, Tensor.numel(t.shape));
            float b = bound;
            for (int i = 0; i < u.length; i++) {
                u[i] = u[i] * b;
            }
            bank.put(t.name, Tensor.of(u, t.shape));
        }
        return bank;
    }

    private static void checkTensor(String what, String name, Tensor v, int[] shape) throws PayloadException {
        if (!Tensor.F32.equals(v.dtype()) || !v.sameShape(shape)) {
            throw new PayloadException(what + " '" + name + "' is " + v + ", expected F32 " + java.util.Arrays.toString(shape));
        }
        for (float f : v.data()) {
            if (Float.isNaN(f) || Float.isInfinite(f)) {
                throw new PayloadException(what + " '" + name + "' contains NaN or infinite values");
            }
        }
    }

    /** Deltas {@code trained - base} of the shared parameters, keyed by wire name. */
    public static Map<String, Tensor> deltas(Manifest manifest, Map<String, Tensor> trained, Map<String, Tensor> baseWire,
                                             Map<String, Integer> groups) throws PayloadException {
        Map<String, Tensor> out = new LinkedHashMap<String, Tensor>();
        for (Manifest.SharedTensor t : manifest.sharedFor(groups)) {
            float[] now = trained.get(t.param).data();
            float[] base = baseWire.get(t.name).data();
            float[] d = new float[now.length];
            for (int i = 0; i < d.length; i++) {
                d[i] = now[i] - base[i];
            }
            out.put(t.name, Tensor.of(d, t.shape));
        }
        return out;
    }
}
