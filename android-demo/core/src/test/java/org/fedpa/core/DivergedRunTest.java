package org.fedpa.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/**
 * A local run that diverged is discarded by the phone ({@link DivergedRun}, the rule of
 * {@code fedpa.schedule.diverged_run}; tests/edge/test_edge_divergence.py is the Python twin):
 * against the real aggregator (through {@link FlakyProxy}, which records the upload), a round at
 * a huge lr keeps the previous private adapter and uploads the noise of a zero change — exactly
 * the noise {@link Ldp} draws for all-zero deltas from the same seed, so the change under it was
 * exactly zero — and is charged like any upload; a round at the default lr is not touched.
 */
public class DivergedRunTest {
    private static final long NOISE_SEED = 9;
    private static final float HUGE_LR = 1e6f; // blows the adapters up from the first steps

    private FlakyProxy proxy;
    private File root;

    @Before
    public void setUp() throws Exception {
        proxy = new FlakyProxy(Fixtures.optional("fedpa.server"));
        root = Fixtures.tempDir("diverged");
    }

    @After
    public void tearDown() {
        proxy.stop();
        BundleInstaller.deleteTree(root);
    }

    /** A phone over the store in {@code root/name} (a second call reopens it, as after an app restart). */
    private FedPAClient phone(String name, TrainingConfig training) throws Exception {
        FedPAClient c = new FedPAClient(new LocalStore(new File(root, name)), new Random(NOISE_SEED), training, 10000);
        c.configure(proxy.url(), Fixtures.required("fedpa.model"));
        c.setPublisherKey(Fixtures.publisherKey());
        return c;
    }

    private static void label(FedPAClient c, int n) throws Exception {
        c.setUserCodes(Catalog.syntheticUser(c.model().manifest(), 5)); // reproducible groups
        int i = 0;
        for (Catalog.Item it : Catalog.synthetic(c.model().manifest(), n, 77)) {
            c.label(it, i++ % 3 == 0 ? 1 : 0);
        }
    }

    private static Map<String, float[]> values(Map<String, Tensor> tensors) {
        Map<String, float[]> out = new LinkedHashMap<String, float[]>();
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            out.put(e.getKey(), e.getValue().data().clone());
        }
        return out;
    }

    private static boolean same(Map<String, float[]> a, Map<String, float[]> b) {
        if (!a.keySet().equals(b.keySet())) {
            return false;
        }
        for (Map.Entry<String, float[]> e : a.entrySet()) {
            if (!Arrays.equals(e.getValue(), b.get(e.getKey()))) {
                return false;
            }
        }
        return true;
    }

    private Map<String, Tensor> lastUpload() throws Exception {
        return SafeTensors.decode(proxy.uploads.get(proxy.uploads.size() - 1)).tensors();
    }

    @Test
    public void aDivergedRoundKeepsTheAdaptersAndUploadsTheNoiseOfAZeroChange() throws Exception {
        FedPAClient normal = phone("p", TrainingConfig.defaults());
        normal.setup(null);
        label(normal, 12);
        Map<String, float[]> initial = values(normal.store().loadPrivate());

        // a normal round is unaffected: trained, its change uploaded, the trained adapter kept
        FedPAClient.RoundResult first = normal.trainAndSync(null);
        assertEquals(first.detail, "accepted", first.status);
        assertEquals("", first.discarded);
        assertEquals(0, first.skippedSteps);
        assertTrue("mean local loss " + first.meanLoss, first.meanLoss >= 0 && first.meanLoss <= DivergedRun.LOSS);
        assertTrue("the local change went into the upload", first.clipNormBefore > 0);
        Map<String, float[]> trained = values(normal.store().loadPrivate());
        assertFalse("the private adapter trained", same(initial, trained));

        // the same phone (restarted) with a huge lr: the run diverges and is discarded
        FedPAClient huge = phone("p", new TrainingConfig(5, 32, HUGE_LR));
        double epsBefore = huge.state().epsilonSpent;
        FedPAClient.RoundResult r = huge.trainAndSync(null);
        assertEquals(r.detail, "accepted", r.status);
        assertFalse("the reason is surfaced", r.discarded.isEmpty());
        String fromCounts = DivergedRun.reason(r.meanLoss, r.skippedSteps, java.util.Collections.<String, Tensor>emptyMap());
        assertTrue(r.discarded, fromCounts != null ? r.discarded.equals(fromCounts)
                : r.discarded.startsWith("trained tensor(s) "));
        assertTrue("previous private adapter kept", same(trained, values(huge.store().loadPrivate())));
        assertEquals("nothing learned went into the upload", 0.0, r.clipNormBefore, 0.0);
        assertEquals("loss after = before: the adapters did not change", r.lossBefore, r.lossAfter, 0f);

        // the upload is pure noise: what Ldp draws for all-zero deltas with the phone's noise seed
        Manifest m = huge.model().manifest();
        Privacy applied = huge.policy().apply(m.privacy);
        assertFalse(applied.mechanism, "none".equals(applied.mechanism)); // a phone always adds noise
        Map<String, Tensor> zero = new LinkedHashMap<String, Tensor>();
        for (Manifest.SharedTensor t : m.sharedFor(huge.groups())) {
            zero.put(t.name, Tensor.zeros(t.shape));
        }
        Map<String, Tensor> noise = Ldp.clipAndNoise(zero, applied, new Random(NOISE_SEED)).update;
        Map<String, Tensor> uploaded = lastUpload();
        assertEquals(noise.keySet(), uploaded.keySet());
        for (Map.Entry<String, Tensor> e : noise.entrySet()) {
            assertArrayEquals(e.getKey(), e.getValue().data(), uploaded.get(e.getKey()).data(), 0f);
        }
        assertTrue("and it is noise, not zeros", Ldp.l2(uploaded) > 0);

        // charged like any upload: the server cannot tell it apart
        assertTrue("epsilon charged: " + epsBefore + " -> " + r.epsilon, r.epsilon > epsBefore);
        assertEquals(r.epsilon, huge.state().epsilonSpent, 0.0);
        assertEquals(2, huge.state().ledger.size());
        assertEquals(2, huge.state().roundsCompleted);
    }

    @Test
    public void reasonNamesEachWayARunDiverges() {
        Map<String, Tensor> finite = new LinkedHashMap<String, Tensor>();
        finite.put("b", Tensor.of(new float[] {1e30f, -1e30f, 0f}, 3));
        assertNull(DivergedRun.reason(0.69, 0, finite));
        assertNull("at the bound is not above it", DivergedRun.reason(DivergedRun.LOSS, 0, finite));
        assertEquals("2 step(s) met a non-finite loss or gradient", DivergedRun.reason(0.69, 2, finite));
        assertEquals("mean local loss 10.01 is not finite or above 10 nats", DivergedRun.reason(10.01, 0, finite));
        assertTrue(DivergedRun.reason(Double.NaN, 0, finite).startsWith("mean local loss NaN"));
        assertTrue(DivergedRun.reason(Double.POSITIVE_INFINITY, 0, finite).startsWith("mean local loss Infinity"));
        Map<String, Tensor> bad = new LinkedHashMap<String, Tensor>(finite);
        bad.put("z", Tensor.of(new float[] {0f, Float.POSITIVE_INFINITY}, 2));
        bad.put("a", Tensor.of(new float[] {Float.NaN}, 1));
        assertEquals("trained tensor(s) [a, z] hold NaN or infinite values", DivergedRun.reason(0.69, 0, bad));
    }
}
