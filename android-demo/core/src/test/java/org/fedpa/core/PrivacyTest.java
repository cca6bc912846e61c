package org.fedpa.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.Test;

/** LDP clipping and noise statistics, and the accountant against fedpa.privacy (dp-accounting). */
public class PrivacyTest {
    private static Map<String, Tensor> update(float scale, int n) {
        Map<String, Tensor> u = new LinkedHashMap<String, Tensor>();
        float[] a = new float[n];
        float[] b = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = scale * (i % 7 - 3);
            b[i] = scale * (i % 5 - 2);
        }
        u.put("a", Tensor.of(a, n));
        u.put("b", Tensor.of(b, n));
        return u;
    }

    @Test
    public void clipsTheWholeUpdateToC() {
        Map<String, Tensor> u = update(1f, 100);
        double before = Ldp.l2(u);
        Privacy clipOnly = new Privacy("none", 2.0, 0.0, 1e-5, Double.POSITIVE_INFINITY);
        Ldp.Result r = Ldp.clipAndNoise(u, clipOnly, new Random(1));
        assertTrue(r.report.clipped);
        assertEquals(before, r.report.normBefore, 1e-9);
        assertEquals(2.0, Ldp.l2(r.update), 1e-5);
        float ratio = r.update.get("a").data()[0] / u.get("a").data()[0];
        assertEquals("direction kept", ratio, r.update.get("b").data()[0] / u.get("b").data()[0], 1e-6);
        assertEquals("input untouched", -3f, u.get("a").data()[0], 0f);
    }

    @Test
    public void smallUpdatesAreNotScaled() {
        Map<String, Tensor> u = update(1e-3f, 10);
        Ldp.Result r = Ldp.clipAndNoise(u, new Privacy("none", 5.0, 0.0, 1e-5, Double.POSITIVE_INFINITY), new Random(1));
        assertFalse(r.report.clipped);
        assertArrayEquals(u.get("a").data(), r.update.get("a").data(), 0f);
    }

    @Test
    public void gaussianNoiseHasMeanZeroAndStdSigmaC() {
        int n = 100000;
        Map<String, Tensor> zero = new LinkedHashMap<String, Tensor>();
        zero.put("z", Tensor.zeros(n));
        Privacy p = new Privacy("gaussian", 0.5, 1.2, 1e-5, Double.POSITIVE_INFINITY);
        float[] v = Ldp.clipAndNoise(zero, p, new Random(42)).update.get("z").data();
        double mean = 0;
        double sq = 0;
        double fourth = 0;
        for (float x : v) {
            mean += x;
            sq += (double) x * x;
            fourth += Math.pow(x, 4);
        }
        mean /= n;
        double std = Math.sqrt(sq / n - mean * mean);
        double sc = 0.6; // sigma * C
        assertEquals(0.0, mean, 4 * sc / Math.sqrt(n));
        assertEquals(sc, std, 0.01 * sc);
        assertEquals("Gaussian kurtosis", 3.0, fourth / n / Math.pow(std, 4), 0.1);
    }

    @Test
    public void laplaceNoiseHasScaleSigmaC() {
        int n = 100000;
        Map<String, Tensor> zero = new LinkedHashMap<String, Tensor>();
        zero.put("z", Tensor.zeros(n));
        Privacy p = new Privacy("laplace", 1.0, 0.5, 1e-5, Double.POSITIVE_INFINITY);
        float[] v = Ldp.clipAndNoise(zero, p, new Random(7)).update.get("z").data();
        double meanAbs = 0;
        for (float x : v) {
            meanAbs += Math.abs(x);
        }
        assertEquals("E|X| = b for Laplace(b)", 0.5, meanAbs / n, 0.01);
    }

    @Test
    public void sameSeedSameNoiseOtherSeedOtherNoise() {
        Map<String, Tensor> u = update(0.1f, 50);
        Privacy p = new Privacy("gaussian", 1.0, 1.0, 1e-5, Double.POSITIVE_INFINITY);
        float[] a = Ldp.clipAndNoise(u, p, new Random(5)).update.get("a").data();
        float[] b = Ldp.clipAndNoise(u, p, new Random(5)).update.get("a").data();
        float[] c = Ldp.clipAndNoise(u, p, new Random(6)).update.get("a").data();
        assertArrayEquals(a, b, 0f);
        assertFalse(java.util.Arrays.equals(a, c));
    }

    @Test
    public void epsilonMatchesDpAccounting() throws Exception {
        JSONArray grid = new JSONArray(new String(Bundle.readFile(Fixtures.fixture("epsilon.json")), "UTF-8"));
        assertTrue(grid.length() > 10);
        for (int i = 0; i < grid.length(); i++) {
            JSONObject g = grid.getJSONObject(i);
            Privacy p = new Privacy("gaussian", 1.0, g.getDouble("sigma"), g.getDouble("delta"), Double.POSITIVE_INFINITY);
            double want = g.getDouble("epsilon");
            assertEquals(g.toString(), want, p.epsilonAfter(g.getInt("rounds")), 1e-9 * Math.max(1, want));
        }
    }

    @Test
    public void heterogeneousLedgersMatchDpAccounting() throws Exception {
        JSONArray cases = new JSONArray(new String(Bundle.readFile(Fixtures.fixture("heterogeneous.json")), "UTF-8"));
        assertTrue(cases.length() >= 6);
        for (int i = 0; i < cases.length(); i++) {
            JSONObject c = cases.getJSONObject(i);
            java.util.List<Accountant.Upload> ledger = new java.util.ArrayList<Accountant.Upload>();
            JSONArray uploads = c.getJSONArray("uploads");
            for (int j = 0; j < uploads.length(); j++) {
                for (int n = 0; n < uploads.getJSONArray(j).getInt(1); n++) {
                    ledger.add(new Accountant.Upload("gaussian", uploads.getJSONArray(j).getDouble(0), 1.0));
                }
            }
            double want = c.getDouble("epsilon");
            assertEquals(c.toString(), want, Accountant.epsilon(ledger, c.getDouble("delta")), 1e-9 * Math.max(1, want));
        }
        // the issue's case under replacement: 4 uploads at sigma 0.5, then 1 at sigma 5
        java.util.List<Accountant.Upload> issue = new java.util.ArrayList<Accountant.Upload>();
        for (int n = 0; n < 4; n++) {
            issue.add(new Accountant.Upload("gaussian", 0.5, 1.0));
        }
        issue.add(new Accountant.Upload("gaussian", 5.0, 1.0));
        assertEquals(68.75, Accountant.epsilon(issue, 1e-5), 0.01);
        Privacy today = new Privacy("gaussian", 1.0, 5.0, 1e-5, 20.0);
        today.checkBudget(4); // four uploads at today's sigma would fit...
        try {
            today.checkBudget(issue.subList(0, 4)); // ...but they were sent at sigma 0.5
            fail("the ledger's real sigmas were ignored");
        } catch (PrivacyBudgetException expected) {
            assertTrue(expected.getMessage().contains("upload #5"));
        }
    }

    @Test
    public void devicePolicyRefusesSettingsBelowItsFloor() throws Exception {
        DevicePolicy policy = DevicePolicy.defaults();
        double floor = policy.floor(30);
        assertEquals(8.0, Accountant.epsilon(new Privacy("gaussian", 1.0, floor, 1e-5, 8.0), 30), 1e-3);
        Privacy applied = policy.apply(new Privacy("gaussian", 0.5, floor * 1.01, 0.1, 1e9, 30));
        assertEquals(1e-5, applied.delta, 0); // the device's delta and budget, never the bundle's
        assertEquals(8.0, applied.epsilonBudget, 0);
        String[][] bad = {{"gaussian", "1.0", "0.001"}, {"gaussian", "1e30", "100"}, {"none", "1.0", "0"}};
        for (String[] b : bad) {
            try {
                policy.apply(new Privacy(b[0], Double.parseDouble(b[1]), Double.parseDouble(b[2]), 1e-5, 8.0, 30));
                fail("accepted " + java.util.Arrays.toString(b));
            } catch (PrivacyPolicyException expected) {
                assertTrue(expected.getMessage(), expected.getMessage().contains("this device"));
            }
        }
    }

    @Test
    public void ledgerSurvivesARestartAndKeepsRefusing() throws Exception {
        File dir = File.createTempFile("fedpa-ledger", "");
        dir.delete();
        try {
            LocalStore store = new LocalStore(dir);
            DeviceState s = store.loadState();
            Privacy p = new Privacy("gaussian", 0.5, 7.0, 1e-5, Accountant.gaussianEpsilon(7.0, 2, 1e-5) + 1e-6);
            for (int i = 0; i < 2; i++) {
                p.checkBudget(s.uploads());
                s.ledger.add(p.upload());
                s.uploadsCharged += 1;
            }
            store.saveState(s);
            DeviceState again = new LocalStore(dir).loadState(); // a restart (or a re-installed bundle: not in state)
            assertEquals(2, again.ledger.size());
            assertEquals(7.0, again.ledger.get(1).noiseMultiplier, 0);
            try {
                p.checkBudget(again.uploads());
                fail("budget reset by a restart");
            } catch (PrivacyBudgetException expected) {
                assertTrue(expected.getMessage().contains("upload #3"));
            }
        } finally {
            BundleInstaller.deleteTree(dir);
        }
    }

    @Test
    public void budgetRefusesTheUploadThatWouldExceedIt() throws Exception {
        Privacy p = new Privacy("gaussian", 1.0, 3.0, 1e-5, 10.0);
        double first = p.checkBudget(0);
        assertTrue(first > 0 && first < 10);
        int rounds = 0;
        try {
            while (rounds < 1000) {
                p.checkBudget(rounds++);
            }
            fail("budget never reached");
        } catch (PrivacyBudgetException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("past this device's budget"));
        }
        assertTrue(p.epsilonAfter(rounds - 1) <= 10.0);
        assertTrue(p.epsilonAfter(rounds) > 10.0);
    }

    @Test
    public void invalidSettingsAreRefused() {
        String[][] bad = {{"gaussian", "0", "1", "1e-5"}, {"gaussian", "1", "0", "1e-5"}, {"gaussian", "1", "1", "1"},
            {"uniform", "1", "1", "1e-5"}, {"laplace", "NaN", "1", "1e-5"}};
        for (String[] b : bad) {
            try {
                new Privacy(b[0], Double.parseDouble(b[1]), Double.parseDouble(b[2]), Double.parseDouble(b[3]), 1.0);
                fail("accepted " + java.util.Arrays.toString(b));
            } catch (IllegalArgumentException expected) {
                assertTrue(expected.getMessage().length() > 10);
            }
        }
    }
}
