package org.fedpa.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.json.JSONObject;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/**
 * Against a real aggregator that test.sh started on loopback with the test bundle published
 * (min_reporters 1; rounds close only when a test asks, as admin): two phones register, download
 * and verify the bundle, label items, train, upload LDP-noised deltas, and the server counts and
 * aggregates them.
 */
public class LoopbackTest {
    private String server;
    private String modelId;
    private File root;

    @Before
    public void setUp() throws Exception {
        server = Fixtures.optional("fedpa.server");
        modelId = Fixtures.required("fedpa.model");
        root = Fixtures.tempDir("phones");
    }

    @After
    public void tearDown() {
        if (root != null) {
            BundleInstaller.deleteTree(root);
        }
    }

    private FedPAClient phone(String name, long seed) throws Exception {
        FedPAClient c = new FedPAClient(new LocalStore(new File(root, name)), new Random(seed), TrainingConfig.defaults(), 10000);
        c.configure(server, modelId);
        c.setPublisherKey(Fixtures.publisherKey()); // test.sh signed the bundle it published
        return c;
    }

    private static void label(FedPAClient c, long seed, int n) throws Exception {
        c.setUserCodes(Catalog.syntheticUser(c.model().manifest(), seed)); // reproducible groups
        List<Catalog.Item> items = Catalog.synthetic(c.model().manifest(), n, seed);
        Random r = new Random(seed);
        for (Catalog.Item it : items) {
            c.label(it, r.nextInt(3) == 0 ? 1 : 0);
        }
    }

    /** The admin's status view: a device's own view carries only versions and round (no counters). */
    private JSONObject status(FedPAClient c) throws Exception {
        return new ApiClient(server, Fixtures.required("fedpa.admin"), 10000).status(modelId);
    }

    @Test
    public void twoPhonesTrainUploadAndAreAggregated() throws Exception {
        FedPAClient a = phone("a", 1);
        a.setup(null);
        assertNotNull("registered", a.state().token);
        assertTrue("bundle installed and verified", new File(a.store().bundleDir(), "manifest.json").isFile());
        JSONObject before = status(a);
        int accepted0 = before.getInt("accepted_total");
        int version0 = before.getInt("state_version");

        label(a, 11, 40);
        List<Object[]> feed = a.feed(Catalog.synthetic(a.model().manifest(), 50, 3), 10);
        assertEquals(10, feed.size());
        Map<String, Tensor> privateBefore = Model.copy(a.personalisation());
        final int[] calls = {0};
        FedPAClient.RoundResult r = a.trainAndSync(new FedPAClient.Progress() {
            @Override
            public void update(String message, double fraction) {
                calls[0]++;
                assertTrue(message, fraction >= 0 && fraction <= 1);
            }
        });
        assertEquals(r.detail, "accepted", r.status);
        assertNotNull(r.updateId);
        assertEquals(40, r.examples);
        assertTrue("loss went down locally: " + r.lossBefore + " -> " + r.lossAfter, r.lossAfter < r.lossBefore);
        assertTrue("the user's AUC on its labels is reported: " + r.aucBefore + " -> " + r.aucAfter,
                r.aucBefore >= 0 && r.aucBefore <= 1 && r.aucAfter >= 0 && r.aucAfter <= 1);
        assertEquals(0, r.skippedSteps);
        assertTrue("epsilon charged", r.epsilon > 0 && a.state().epsilonSpent == r.epsilon);
        assertTrue("progress reported", calls[0] > 3);
        assertNull("nothing pending", a.state().pendingNonce);
        assertEquals(1, a.state().roundsCompleted);
        float[] uBefore = privateBefore.get("layers.0.user.lora_B").data();
        float[] uAfter = a.store().loadPrivate().get("layers.0.user.lora_B").data();
        assertTrue("private adapter trained and kept on the device", !java.util.Arrays.equals(uBefore, uAfter));
        assertEquals("counted by the server", accepted0 + 1, status(a).getInt("accepted_total"));

        FedPAClient b = phone("b", 2);
        b.setup(null);
        label(b, 12, 30);
        FedPAClient.RoundResult rb = b.trainAndSync(null);
        assertEquals(rb.detail, "accepted", rb.status);
        assertEquals(accepted0 + 2, status(a).getInt("accepted_total"));
        assertTrue("both reported to the gate: " + status(a), status(a).getJSONObject("reporters").getInt("gate") >= 2);

        new ApiClient(server, Fixtures.required("fedpa.admin"), 10000)
                .request("POST", "/v1/models/" + modelId + "/aggregate", new byte[0], "application/json", null);
        JSONObject after = status(a);
        assertTrue("round aggregated: " + after, after.getInt("state_version") > version0);
        assertEquals(after.getInt("accepted_total"), after.getInt("aggregated_total"));
        assertEquals(0, after.getInt("pending_updates"));

        FedPAClient.RoundResult second = a.trainAndSync(null); // trains from the new shared state
        assertEquals(second.detail, "accepted", second.status);
        assertEquals(after.getInt("state_version"), second.baseVersion);
        assertTrue("epsilon grows with rounds", second.epsilon > r.epsilon);
    }

    @Test
    public void replayedUploadIsRefusedAndNothingIsStored() throws Exception {
        FedPAClient a = phone("c", 3);
        a.setup(null);
        Manifest m = a.model().manifest();
        Map<String, Integer> groups = a.groups();
        ApiClient api = new ApiClient(server, a.state().token, 10000);
        ApiClient.Response st = api.state(modelId, groups, null);
        Map<String, Tensor> zero = new LinkedHashMap<String, Tensor>();
        for (Map.Entry<String, Tensor> e : SafeTensors.decode(st.body).tensors().entrySet()) {
            zero.put(e.getKey(), Tensor.zeros(e.getValue().shape()));
        }
        Map<String, String> meta = new LinkedHashMap<String, String>();
        JSONObject g = new JSONObject();
        for (Map.Entry<String, Integer> e : groups.entrySet()) {
            g.put(e.getKey(), e.getValue().intValue());
        }
        JSONObject privacy = new JSONObject().put("mechanism", m.privacy.mechanism).put("clip_norm", m.privacy.clipNorm)
                .put("noise_multiplier", m.privacy.noiseMultiplier).put("epsilon_spent", 1.0).put("delta", m.privacy.delta);
        JSONObject um = new JSONObject().put("model_id", modelId).put("model_version", m.modelVersion)
                .put("base_version", Integer.parseInt(st.header(Wire.STATE_VERSION_HEADER))).put("groups", g)
                .put("example_count", 5).put("nonce", "replay-test-" + System.nanoTime()).put("privacy", privacy);
        meta.put(Wire.UPDATE_META_KEY, um.toString());
        byte[] body = SafeTensors.encode(zero, meta);
        api.upload(modelId, body);
        int accepted = status(a).getInt("accepted_total");
        try {
            api.upload(modelId, body);
            fail("the server accepted a replayed nonce");
        } catch (SyncException e) {
            assertEquals(409, e.status());
            assertEquals(e.getMessage(), Wire.REPLAYED_NONCE, e.code()); // the exact code the client acts on
        }
        assertEquals("replay not counted", accepted, status(a).getInt("accepted_total"));
    }

    @Test
    public void badTokenIsA401WithTheServersReason() throws Exception {
        ApiClient api = new ApiClient(server, "not-a-token", 10000);
        try {
            api.status(modelId);
            fail("status with a bad token");
        } catch (SyncException e) {
            assertEquals(401, e.status());
            assertTrue(e.getMessage(), e.getMessage().contains("401"));
        }
    }

    @Test
    public void unknownModelIsA404AndLeavesTheStoreUsable() throws Exception {
        FedPAClient c = phone("d", 4);
        c.configure(server, "no-such-model");
        try {
            c.setup(null);
            fail("registered for an unknown model");
        } catch (SyncException e) {
            assertEquals(e.getMessage(), 404, e.status());
        }
        assertNull(c.state().token);
    }

    @Test
    public void unreachableServerIsAClearErrorAndKeepsLocalData() throws Exception {
        FlakyProxy path = new FlakyProxy(server); // the phone's only way to the server
        FedPAClient a = new FedPAClient(new LocalStore(new File(root, "e")), new Random(5), TrainingConfig.defaults(), 10000);
        a.configure(path.url(), modelId);
        a.setPublisherKey(Fixtures.publisherKey());
        a.setup(null);
        label(a, 13, 5);
        List<Catalog.Item> seen = Catalog.synthetic(a.model().manifest(), 20, 1);
        a.feed(seen, 5); // fetches (and caches) these candidates' item-table rows
        path.stop(); // the network is gone
        try {
            a.trainAndSync(null);
            fail("synced with no server");
        } catch (SyncException e) {
            assertEquals(0, e.status());
            assertTrue(e.getMessage(), e.getMessage().contains("cannot reach the server at " + path.url()));
        }
        assertEquals("interactions kept", 5, a.store().loadInteractions().size());
        assertEquals("model still usable offline (cached item rows)", 5, a.feed(seen, 5).size());
        try {
            a.feed(Catalog.synthetic(a.model().manifest(), 30, 1), 5); // 10 candidates never looked up
            fail("ranked candidates without their item rows");
        } catch (SyncException e) {
            assertEquals(0, e.status());
            assertTrue(e.getMessage(), e.getMessage().startsWith(ItemTableClient.FAILED + "could not look up 10 candidate(s)"));
        }
    }
}
