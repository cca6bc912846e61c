package org.fedpa.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.FileOutputStream;
import java.io.RandomAccessFile;
import java.util.List;
import java.util.Map;
import org.junit.After;
import org.junit.Test;

/** The real bundle from fedpa-export: verification, and golden-vector parity of the Java engine. */
public class BundleGoldenTest {
    private File copy;

    @After
    public void tearDown() {
        if (copy != null) {
            BundleInstaller.deleteTree(copy);
        }
    }

    @Test
    public void javaEngineReproducesTheBundlesGoldenVectors() throws Exception {
        Model model = new Model(Bundle.open(Fixtures.bundleDir()));
        List<Golden.Check> checks = Golden.replay(model);
        assertTrue("too few checks: " + checks, checks.size() >= 5);
        StringBuilder failed = new StringBuilder();
        int inference = 0;
        int gradients = 0;
        int updates = 0;
        for (Golden.Check c : checks) {
            if (!c.name.startsWith("SGD update")) {
                System.out.println("      " + c);
            }
            if (!c.ok) {
                failed.append(c).append('\n');
            }
            inference += c.name.startsWith("inference") ? 1 : 0;
            gradients += c.name.startsWith("gradient") ? 1 : 0;
            updates += c.name.startsWith("SGD update") ? 1 : 0;
        }
        assertEquals("golden parity failures:\n" + failed, 0, failed.length());
        assertTrue("inference cases replayed", inference >= 1);
        int tensors = model.manifest().privateTensors.size() + countShared(model.manifest());
        assertEquals("a gradient per personalisation tensor", tensors, gradients);
        assertEquals("an SGD update per personalisation tensor", tensors, updates);
    }

    private static int countShared(Manifest m) throws Exception {
        Map<String, Integer> groups = new java.util.LinkedHashMap<String, Integer>();
        for (String a : m.config.groupAttributes) {
            groups.put(a, 0);
        }
        return m.sharedFor(groups).size();
    }

    @Test
    public void manifestDescribesTheArchitecture() throws Exception {
        Manifest m = Bundle.open(Fixtures.bundleDir()).manifest();
        assertEquals(m.config.cardinalities.length, m.features.size());
        assertTrue(m.config.groupAttributes.size() >= 1);
        assertTrue(m.fileSha256.containsKey(Bundle.SHARED_STATE));
        Bundle b = Bundle.open(Fixtures.bundleDir());
        assertEquals(m.sharedTensors.size(), b.sharedState().size());
        assertEquals(m.privateTensors.keySet(), b.privateInit().keySet());
    }

    private File copyBundle() throws Exception {
        copy = Fixtures.tempDir("bundle");
        for (File f : Fixtures.bundleDir().listFiles()) {
            FileOutputStream out = new FileOutputStream(new File(copy, f.getName()));
            out.write(Bundle.readFile(f));
            out.close();
        }
        return copy;
    }

    /** A copy of the bundle whose manifest declares another format_version. */
    private File copyWithFormatVersion(int version) throws Exception {
        File dir = copyBundle();
        File mf = new File(dir, Bundle.MANIFEST);
        String json = new String(Bundle.readFile(mf), "UTF-8")
                .replaceFirst("\"format_version\":\\s*3", "\"format_version\": " + version);
        FileOutputStream out = new FileOutputStream(mf);
        out.write(json.getBytes("UTF-8"));
        out.close();
        return dir;
    }

    @Test
    public void flippedByteIsRefusedNamingTheFile() throws Exception {
        File dir = copyBundle();
        RandomAccessFile raf = new RandomAccessFile(new File(dir, "inference.onnx"), "rw");
        raf.seek(100);
        int b = raf.read();
        raf.seek(100);
        raf.write(b ^ 1);
        raf.close();
        try {
            Bundle.open(dir);
            fail("opened a tampered bundle");
        } catch (BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("inference.onnx") && e.getMessage().contains("tampered"));
        }
    }

    @Test
    public void missingFileIsRefusedNamingIt() throws Exception {
        File dir = copyBundle();
        assertTrue(new File(dir, Bundle.SHARED_STATE).delete());
        try {
            Bundle.open(dir);
            fail("opened a bundle without its shared state");
        } catch (BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains(Bundle.SHARED_STATE) && e.getMessage().contains("missing"));
        }
    }

    @Test
    public void backboneSafetensorsIsTheFrozenWeightsInProgramOrder() throws Exception {
        Bundle b = Bundle.open(Fixtures.bundleDir());
        assertTrue(b.manifest().fileSha256.containsKey(Bundle.BACKBONE));
        FrozenWeights w = b.frozenWeights();
        assertEquals(new java.util.ArrayList<String>(FrozenWeights.declared(b.manifest(), "inference").keySet()),
                new java.util.ArrayList<String>(w.byName.keySet()));
        assertEquals(FrozenWeights.declared(b.manifest(), "inference").keySet(),
                FrozenWeights.declared(b.manifest(), "training").keySet());
    }

    @Test
    public void backboneWithWrongNamesShapesOrDtypesIsRefusedNamingTheTensor() throws Exception {
        Bundle b = Bundle.open(Fixtures.bundleDir());
        Map<String, Tensor> good = b.safetensors(Bundle.BACKBONE).tensors();
        String first = good.keySet().iterator().next();
        Map<String, Tensor> renamed = new java.util.LinkedHashMap<String, Tensor>(good);
        renamed.put("backbone.extra.weight", renamed.remove(first));
        assertRefused(renamed, b.manifest(), "missing [" + first + "]");
        Map<String, Tensor> reshaped = new java.util.LinkedHashMap<String, Tensor>(good);
        float[] data = good.get(first).data();
        reshaped.put(first, Tensor.of(java.util.Arrays.copyOf(data, data.length - 1), data.length - 1));
        assertRefused(reshaped, b.manifest(), first + " has shape");
        Map<String, Tensor> ints = new java.util.LinkedHashMap<String, Tensor>(good);
        ints.put(first, Tensor.ofLongs(new long[data.length], good.get(first).shape()));
        assertRefused(ints, b.manifest(), first + " has dtype");
    }

    private static void assertRefused(Map<String, Tensor> tensors, Manifest m, String expected) {
        try {
            FrozenWeights.fromBackbone(tensors, m, Bundle.BACKBONE);
            fail("accepted a bad backbone: " + expected);
        } catch (BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains(expected) && e.getMessage().contains(Bundle.BACKBONE));
        }
    }

    @Test
    public void missingBackboneIsRefusedNamingIt() throws Exception {
        File dir = copyBundle();
        assertTrue(new File(dir, Bundle.BACKBONE).delete());
        try {
            Bundle.open(dir);
            fail("opened a bundle without its backbone");
        } catch (BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains(Bundle.BACKBONE) && e.getMessage().contains("missing"));
        }
    }

    @Test
    public void unknownFormatVersionIsRefused() throws Exception {
        File dir = copyWithFormatVersion(99);
        try {
            Bundle.open(dir);
            fail("opened format_version 99");
        } catch (BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("format_version 99"));
        }
    }

    @Test
    public void format2BundleIsRefusedWithTheFix() throws Exception {
        File dir = copyWithFormatVersion(2);
        try {
            Bundle.open(dir);
            fail("opened format_version 2");
        } catch (BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("format_version 2, a bundle that ships its whole initial bank")
                    && e.getMessage().contains("rebuild it with fedpa-export build"));
        }
    }

    @Test
    public void bankIsTheStoredTensorsPlusTheDrawnOnes() throws Exception {
        Bundle b = Bundle.open(Fixtures.bundleDir());
        Manifest m = b.manifest();
        Map<String, Tensor> stored = b.safetensors(Bundle.SHARED_STATE).tensors();
        Map<String, Tensor> bank = b.sharedState();
        assertEquals(m.sharedTensors.size(), bank.size());
        assertTrue("lora_A and gate w1 drawn", m.initialBank.drawn.size() > 0);
        for (Manifest.SharedTensor t : m.sharedTensors) {
            assertEquals(t.name, !m.initialBank.drawn.containsKey(t.param), stored.containsKey(t.param));
        }
    }

    @Test
    public void sharedStateWithoutADrawnEntryIsRefusedNamingTheFile() throws Exception {
        File dir = copyBundle();
        File mf = new File(dir, Bundle.MANIFEST);
        org.json.JSONObject o = new org.json.JSONObject(new String(Bundle.readFile(mf), "UTF-8"));
        org.json.JSONObject drawn = o.getJSONObject("shared_state").getJSONObject("initial").getJSONObject("drawn");
        String param = (String) drawn.keys().next();
        drawn.remove(param);
        FileOutputStream out = new FileOutputStream(mf);
        out.write(o.toString().getBytes("UTF-8"));
        out.close();
        try {
            Bundle.open(dir).sharedState();
            fail("materialised a bank whose file lacks " + param);
        } catch (BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains(Bundle.SHARED_STATE) && e.getMessage().contains("missing [" + param));
        }
    }
}
