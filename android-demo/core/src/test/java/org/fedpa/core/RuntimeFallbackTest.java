package org.fedpa.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.FileOutputStream;
import java.util.Map;
import org.json.JSONObject;
import org.junit.After;
import org.junit.Test;

/**
 * The runtime choice made when a bundle is opened ({@link VerifiedRuntimeFactory}), with fake
 * "native" runtimes failing in each way a phone can: missing native library, version that does
 * not match the bundle's toolchain, results that disagree with the golden vectors (inference or
 * training), an exception, a skipped step. Each must fall back to the pure-Java engine with a
 * notice naming the reason; a faithful runtime must be chosen. The app's real ExecuTorch runtime,
 * compiled by test.sh against the ExecuTorch API stub, is run too: the stub has no native code,
 * exactly like a phone without libexecutorch.so.
 */
public class RuntimeFallbackTest {
    private File copy;

    @After
    public void tearDown() {
        if (copy != null) {
            BundleInstaller.deleteTree(copy);
        }
    }

    /** A stand-in for ExecuTorch: the pure-Java engine behind a configurable wrapper. */
    private abstract static class Fake implements VerifiedRuntimeFactory.Candidate {
        final String version;
        int created;

        Fake(String version) {
            this.version = version;
        }

        @Override
        public String runtimeName() {
            return "FakeNative";
        }

        @Override
        public String toolchainKey() {
            return "executorch";
        }

        @Override
        public String version() {
            return version;
        }

        @Override
        public ModelRuntime create(Bundle bundle, Engine engine, Trainer trainer) throws FedPAException {
            created++;
            final JavaRuntime inner = new JavaRuntime(engine, trainer);
            return new ModelRuntime() {
                @Override
                public float[] score(long[] x, int n, Map<String, Tensor> params) throws FedPAException {
                    return distortScore(inner.score(x, n, params));
                }

                @Override
                public float step(long[] x, float[] y, int n, Map<String, Tensor> params, float lr) throws FedPAException {
                    return inner.step(x, y, n, params, distortLr(lr));
                }

                @Override
                public String name() {
                    return "FakeNative";
                }
            };
        }

        float[] distortScore(float[] logits) {
            return logits;
        }

        float distortLr(float lr) {
            return lr;
        }
    }

    private static String bundleVersion() throws Exception {
        String v = VerifiedRuntimeFactory.toolchainVersion(Bundle.open(Fixtures.bundleDir()).manifest(), "executorch");
        assertTrue("the test bundle names the executorch that wrote it", v != null);
        return v;
    }

    private static VerifiedRuntimeFactory open(Fake fake, File dir) throws Exception {
        VerifiedRuntimeFactory verified = new VerifiedRuntimeFactory(fake);
        Model model = new Model(Bundle.open(dir), verified);
        assertEquals(verified.chosen(), model.runtime().name());
        return verified;
    }

    private static void assertFellBack(VerifiedRuntimeFactory v, String... reasons) {
        assertEquals("pure Java", v.chosen());
        String notice = v.notice();
        assertTrue("a fallback comes with a notice", notice != null);
        assertTrue(notice, notice.endsWith("ranking and training with the pure-Java engine instead"));
        for (String r : reasons) {
            assertTrue("notice names '" + r + "': " + notice, notice.contains(r));
        }
    }

    @Test
    public void aFaithfulRuntimeIsChosenWithoutNotice() throws Exception {
        Fake fake = new Fake(bundleVersion()) {
        };
        VerifiedRuntimeFactory v = open(fake, Fixtures.bundleDir());
        assertEquals("FakeNative", v.chosen());
        assertNull(v.notice());
    }

    @Test
    public void missingNativeLibraryFallsBack() throws Exception {
        Fake fake = new Fake(bundleVersion()) {
            @Override
            public ModelRuntime create(Bundle bundle, Engine engine, Trainer trainer) {
                created++;
                throw new UnsatisfiedLinkError("dlopen failed: library \"libexecutorch.so\" not found");
            }
        };
        assertFellBack(open(fake, Fixtures.bundleDir()), "native library is not available", "libexecutorch.so");
    }

    @Test
    public void versionMismatchFallsBackWithoutLoading() throws Exception {
        Fake fake = new Fake("0.7.0") {
        };
        assertFellBack(open(fake, Fixtures.bundleDir()), "FakeNative 0.7.0 in this app does not match",
                "written by executorch " + bundleVersion());
        assertEquals("the mismatched runtime is never loaded", 0, fake.created);
    }

    @Test
    public void bundleWithoutToolchainVersionFallsBack() throws Exception {
        copy = copyBundle();
        JSONObject m = new JSONObject(new String(Bundle.readFile(new File(copy, Bundle.MANIFEST)), "UTF-8"));
        m.remove("toolchain");
        write(new File(copy, Bundle.MANIFEST), m.toString().getBytes("UTF-8"));
        Fake fake = new Fake(bundleVersion()) {
        };
        assertFellBack(open(fake, copy), "the manifest names no executorch version");
        assertEquals(0, fake.created);
    }

    @Test
    public void inferenceMismatchFallsBack() throws Exception {
        Fake fake = new Fake(bundleVersion()) {
            @Override
            float[] distortScore(float[] logits) {
                float[] out = logits.clone();
                out[0] += 1e-2f;
                return out;
            }
        };
        assertFellBack(open(fake, Fixtures.bundleDir()), "disagrees with the model's golden vectors", "inference case 0");
    }

    @Test
    public void trainingMismatchFallsBack() throws Exception {
        Fake fake = new Fake(bundleVersion()) {
            @Override
            float distortLr(float lr) {
                return lr * 1.5f; // right loss and logits, wrong update
            }
        };
        assertFellBack(open(fake, Fixtures.bundleDir()), "disagrees with the model's golden vectors", "SGD update");
    }

    @Test
    public void aRuntimeThatSkipsTheGoldenStepFallsBack() throws Exception {
        Fake fake = new Fake(bundleVersion()) {
            @Override
            public ModelRuntime create(Bundle bundle, Engine engine, Trainer trainer) throws FedPAException {
                final ModelRuntime inner = super.create(bundle, engine, trainer);
                return new ModelRuntime() {
                    @Override
                    public float[] score(long[] x, int n, Map<String, Tensor> params) throws FedPAException {
                        return inner.score(x, n, params);
                    }

                    @Override
                    public float step(long[] x, float[] y, int n, Map<String, Tensor> params, float lr) {
                        return Float.NaN; // the non-finite guard fired (wrongly) on the golden batch
                    }

                    @Override
                    public String name() {
                        return "FakeNative";
                    }
                };
            }
        };
        assertFellBack(open(fake, Fixtures.bundleDir()), "training loss");
    }

    @Test
    public void anExceptionWhileReplayingFallsBack() throws Exception {
        Fake fake = new Fake(bundleVersion()) {
            @Override
            float[] distortScore(float[] logits) {
                throw new IllegalStateException("Module has been destroyed");
            }
        };
        assertFellBack(open(fake, Fixtures.bundleDir()), "failed on this model", "Module has been destroyed");
    }

    @Test
    public void releaseMatchingRule() {
        assertTrue(VerifiedRuntimeFactory.sameRelease("1.4.1", "1.4.0"));
        assertTrue(VerifiedRuntimeFactory.sameRelease("1.4.1+cpu", "1.4.1"));
        assertFalse(VerifiedRuntimeFactory.sameRelease("1.3.1", "1.4.1"));
        assertFalse(VerifiedRuntimeFactory.sameRelease("1.40.0", "1.4.0"));
        assertFalse(VerifiedRuntimeFactory.sameRelease(null, "1.4.1"));
        assertFalse(VerifiedRuntimeFactory.sameRelease("dev", "1.4.1"));
    }

    /** The app's real ExecuTorch runtime, compiled by test.sh against the ExecuTorch API stub. */
    @Test
    public void theAppsExecuTorchRuntimeWithoutNativeLibraryFallsBack() throws Exception {
        String linked = Fixtures.required("fedpa.executorch.version"); // gradle.properties, passed by test.sh
        VerifiedRuntimeFactory.Candidate et = Fixtures.executorch("stub");
        assertEquals("ExecuTorch", et.runtimeName());
        assertEquals("the app links the ExecuTorch of gradle.properties", linked, et.version());
        VerifiedRuntimeFactory v = new VerifiedRuntimeFactory(et);
        Model model = new Model(Bundle.open(Fixtures.bundleDir()), v);
        assertEquals("pure Java", model.runtime().name());
        assertFellBack(v, "ExecuTorch's native library is not available", "UnsatisfiedLinkError");
    }

    private static File copyBundle() throws Exception {
        File src = Fixtures.bundleDir();
        File dst = new File(src.getParentFile(), "fallback-copy-" + System.nanoTime());
        assertTrue(dst.mkdirs());
        for (File f : src.listFiles()) {
            write(new File(dst, f.getName()), Bundle.readFile(f));
        }
        return dst;
    }

    private static void write(File f, byte[] data) throws Exception {
        FileOutputStream out = new FileOutputStream(f);
        try {
            out.write(data);
        } finally {
            out.close();
        }
    }
}
