package org.fedpa.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/**
 * A base-features bundle (the feature tables only: no item-table, no history columns) ranks and
 * records with no lookup and no history file; a full-features one refuses to rank without a server
 * connection. The base manifest is the test bundle's with its signal columns removed — the layout
 * {@code fedpa-export build --features base} writes.
 */
public class BaseFeaturesTest {
    private File root;
    private int calls;
    private final ItemTableClient.Connection refuse = new ItemTableClient.Connection() {
        @Override
        public ApiClient api() throws SyncException {
            calls++;
            throw new SyncException(0, "unreachable", "a base-features bundle must not look items up");
        }
    };

    @Before
    public void setUp() throws Exception {
        root = Fixtures.tempDir("base");
    }

    @After
    public void tearDown() {
        BundleInstaller.deleteTree(root);
    }

    private static JSONObject bundleManifest() throws Exception {
        return new JSONObject(new String(Bundle.readFile(new File(Fixtures.bundleDir(), Bundle.MANIFEST)),
                Charset.forName("UTF-8")));
    }

    /** The test bundle's manifest without its item_table and history features. */
    private static Manifest base() throws Exception {
        JSONObject m = bundleManifest();
        JSONObject schema = m.getJSONObject("feature_schema");
        JSONArray features = schema.getJSONArray("features");
        JSONArray cards = m.getJSONObject("backbone").getJSONArray("cardinalities");
        JSONArray keptFeatures = new JSONArray();
        JSONArray keptCards = new JSONArray();
        for (int i = 0; i < features.length(); i++) {
            String source = features.getJSONObject(i).optString("source", features.getJSONObject(i).getString("side"));
            if ("user".equals(source) || "item".equals(source)) {
                keptFeatures.put(features.getJSONObject(i));
                keptCards.put(cards.getInt(i));
            }
        }
        schema.put("features", keptFeatures);
        m.getJSONObject("backbone").put("cardinalities", keptCards);
        m.getJSONObject("backbone").put("n_signal_features", 0);  // the narrow table embeds only signal columns
        m.remove("item_vectors"); // a base bundle has no item code to take vectors for
        return Manifest.parse(m.toString());
    }

    /** The base manifest with no feature_schema at all (bundles written before the schema travelled). */
    private static Manifest schemaless() throws Exception {
        JSONObject m = new JSONObject(base().json);
        m.remove("feature_schema");
        return Manifest.parse(m.toString());
    }

    @Test
    public void aBaseBundleRanksAndRecordsWithoutLookupsOrHistory() throws Exception {
        checkBase(base());
    }

    @Test
    public void aManifestWithoutASchemaRanksUserThenItemColumns() throws Exception {
        Manifest m = schemaless();
        assertTrue(m.features.isEmpty());
        checkBase(m);
    }

    private void checkBase(Manifest m) throws Exception {
        LocalStore store = new LocalStore(root);
        long[] user = Catalog.syntheticUser(m, 3);
        DeviceSignals signals = DeviceSignals.open(store, m, new ItemTableClient(refuse, m.modelId, m.modelVersion), user);
        List<Catalog.Item> items = Catalog.synthetic(m, 5, 7);
        List<long[]> codes = new ArrayList<long[]>();
        for (Catalog.Item it : items) {
            codes.add(it.codes);
        }
        Map<String, Integer> groups = m.features.isEmpty() ? new java.util.HashMap<String, Integer>()
                : SharedState.groupsOf(m, user); // unused without item-table columns

        long[] x = signals.fill(user, codes, null, groups); // no ids needed either
        signals.record(java.util.Arrays.copyOf(x, m.config.nFeatures()), 1);

        assertFalse(signals.active());
        assertEquals("no connection was even asked for", 0, calls);
        int nf = m.config.nFeatures();
        for (int i = 0; i < items.size(); i++) {
            long[] row = java.util.Arrays.copyOfRange(x, i * nf, (i + 1) * nf);
            long[] want = new long[nf];
            System.arraycopy(user, 0, want, 0, user.length);
            System.arraycopy(items.get(i).codes, 0, want, user.length, items.get(i).codes.length);
            assertArrayEquals("user codes then the item's own codes", want, row);
        }
        assertFalse("no history file", new File(root, LocalStore.HISTORY).exists());
    }

    @Test
    public void aFullBundleNeedsItsItemRows() throws Exception {
        Manifest full = Manifest.parse(bundleManifest().toString());
        LocalStore store = new LocalStore(root);
        long[] user = Catalog.syntheticUser(full, 3);
        List<Catalog.Item> items = Catalog.synthetic(full, 2, 7);
        assertEquals("a catalogue item carries only the item-source features", full.positions(Manifest.Feature.ITEM).length,
                items.get(0).codes.length);
        try {
            DeviceSignals.open(store, full, null, user);
            fail("a full bundle opened without an item-table client");
        } catch (BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("item-table columns"));
        }
        DeviceSignals signals = DeviceSignals.open(store, full, new ItemTableClient(refuse, full.modelId,
                full.modelVersion, 16, 100), user);
        List<long[]> codes = new ArrayList<long[]>();
        List<String> ids = new ArrayList<String>();
        for (Catalog.Item it : items) {
            codes.add(it.codes);
            ids.add(it.key);
        }
        try {
            signals.fill(user, codes, ids, SharedState.groupsOf(full, user));
            fail("ranked without the item rows");
        } catch (SyncException e) {
            assertTrue(e.getMessage(), e.getMessage().startsWith(ItemTableClient.FAILED));
        }
        assertEquals(1, calls);
    }
}
