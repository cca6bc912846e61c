package org.fedpa.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.IOException;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.json.JSONObject;
import org.junit.Assume;

/** Paths handed over by test.sh (system properties) and shared assertions. */
final class Fixtures {
    private Fixtures() {
    }

    /** Reference files written by tools/make_fixtures.py. */
    /** A new, empty directory under the system's temporary folder (the caller deletes it). */
    static File tempDir(String prefix) throws IOException {
        File dir = File.createTempFile(prefix, "");
        if (!dir.delete() || !dir.mkdirs()) {
            throw new IOException("cannot create a temporary directory at " + dir);
        }
        return dir;
    }

    static File fixture(String name) {
        return new File(required("fedpa.fixtures"), name);
    }

    /** The bundle test.sh built with fedpa-export. */
    static File bundleDir() {
        return new File(required("fedpa.bundle"));
    }

    /** The PEM text of the publisher key test.sh signed the published bundle with. */
    static String publisherKey() throws IOException {
        return new String(Bundle.readFile(new File(required("fedpa.publisherKey"))), "UTF-8");
    }

    static String required(String property) {
        String v = System.getProperty(property);
        if (v == null || v.isEmpty()) {
            fail("system property " + property + " is not set (run the tests through android-demo/test.sh)");
        }
        return v;
    }

    /** Skip (not pass) a test whose external input test.sh could not provide. */
    static String optional(String property) {
        String v = System.getProperty(property);
        Assume.assumeTrue(property + " not set", v != null && !v.isEmpty());
        return v;
    }

    /**
     * The app's ExecuTorch runtime factory (app/src/executorch, compiled by test.sh) linked against
     * {@code api}: "stub" (signatures only, no native code) or "fake" (run by the pure-Java engine),
     * each in its own class loader so both can be used in one JVM.
     */
    static VerifiedRuntimeFactory.Candidate executorch(String api) throws Exception {
        java.net.URL[] path = new java.net.URL[] {new File(required("fedpa.executorch.app")).toURI().toURL(),
                new File(required("fedpa.executorch." + api)).toURI().toURL()};
        ClassLoader loader = new java.net.URLClassLoader(path, Fixtures.class.getClassLoader());
        return (VerifiedRuntimeFactory.Candidate) loader.loadClass("org.fedpa.demo.executorch.ExecuTorchRuntimeFactory")
                .newInstance();
    }

    static SafeTensors read(File f) throws IOException, PayloadException {
        return SafeTensors.decode(Bundle.readFile(f));
    }

    static ModelConfig config(SafeTensors st) throws Exception {
        JSONObject o = new JSONObject(st.metadata().get("config"));
        return ModelConfig.fromJson(o.getJSONObject("backbone"), o.getJSONObject("adapter"));
    }

    /** Tensors whose name starts with {@code prefix}, prefix removed. */
    static Map<String, Tensor> prefixed(SafeTensors st, String prefix) {
        Map<String, Tensor> out = new LinkedHashMap<String, Tensor>();
        for (Map.Entry<String, Tensor> e : st.tensors().entrySet()) {
            if (e.getKey().startsWith(prefix)) {
                out.put(e.getKey().substring(prefix.length()), e.getValue());
            }
        }
        return out;
    }

    /** |a - b| <= atol + rtol·|b| elementwise, with the worst offender in the message. */
    static void assertClose(String what, float[] expected, float[] actual, double atol, double rtol) {
        assertEquals(what + ": length", expected.length, actual.length);
        double worst = 0;
        int at = -1;
        for (int i = 0; i < expected.length; i++) {
            double err = Math.abs(expected[i] - actual[i]) - (atol + rtol * Math.abs(expected[i]));
            if (err > worst || Double.isNaN(actual[i])) {
                worst = Double.isNaN(actual[i]) ? Double.POSITIVE_INFINITY : err;
                at = i;
            }
        }
        if (at >= 0) {
            fail(what + ": element " + at + " expected " + expected[at] + " got " + actual[at] + " (atol " + atol
                    + ", rtol " + rtol + "); first values " + Arrays.toString(Arrays.copyOf(actual, Math.min(4, actual.length))));
        }
    }

    /**
     * {@code model} with a vector for every item code (deterministic values), for tests that run the
     * full-features bundle's programs on made-up rows: its programs take the item code's embedding
     * as an item vector, which a device learns from its lookups (none here).
     */
    static Model withItemVectors(Model model) {
        ItemVectors book = model.engine().itemVectors();
        if (book != null) {
            int card = model.manifest().config.cardinalities[model.manifest().config.itemColumn];
            for (int code = 0; code < card; code++) {
                float[] v = new float[book.dim()];
                for (int j = 0; j < v.length; j++) {
                    v[j] = 0.01f * ((code * 31 + j * 7) % 17 - 8);
                }
                book.put(code, v);
            }
        }
        return model;
    }
}
