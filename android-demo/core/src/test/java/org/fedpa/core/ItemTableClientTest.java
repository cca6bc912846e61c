package org.fedpa.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/**
 * The phone's item-table client against the real aggregator serving test.sh's table, through a
 * loopback proxy that counts the ids of every lookup and misbehaves on demand: batches of at most
 * the server's limit, the cache per table version, unknown items → the OOV row, failed lookups.
 */
public class ItemTableClientTest {
    private FlakyProxy proxy;
    private ApiClient api;
    private String model;
    private int modelVersion;
    private JSONObject expected; // the Python table's rows for known ids + one unknown (test.sh)
    private List<String> ids;

    @Before
    public void setUp() throws Exception {
        String server = Fixtures.optional("fedpa.server");
        expected = new JSONObject(new String(Bundle.readFile(new File(Fixtures.optional("fedpa.items"))),
                Charset.forName("UTF-8")));
        model = Fixtures.required("fedpa.model");
        modelVersion = Manifest.parse(new String(Bundle.readFile(new File(Fixtures.bundleDir(), Bundle.MANIFEST)),
                Charset.forName("UTF-8"))).modelVersion;
        proxy = new FlakyProxy(server);
        api = new ApiClient(proxy.url(), null, 10000);
        api.register(model);
        ids = new ArrayList<String>();
        JSONArray a = expected.getJSONArray("ids");
        for (int i = 0; i < a.length(); i++) {
            ids.add(a.getString(i));
        }
    }

    @After
    public void tearDown() {
        if (proxy != null) {
            proxy.stop();
        }
    }

    private ItemTableClient client(int maxBatch, int maxCached) {
        return new ItemTableClient(ItemTableClient.of(api), model, modelVersion, maxBatch, maxCached);
    }

    private List<Integer> lookups() {
        synchronized (proxy.lookups) {
            List<Integer> out = new ArrayList<Integer>(proxy.lookups);
            proxy.lookups.clear();
            return out;
        }
    }

    private void assertRowsArePython(String what, ItemRows rows, List<String> asked) throws Exception {
        assertEquals(what + ": rows", asked.size(), rows.size());
        assertFirstRowsArePython(what, rows, asked);
    }

    private void assertFirstRowsArePython(String what, ItemRows rows, List<String> asked) throws Exception {
        for (int i = 0; i < asked.size(); i++) {
            int k = ids.indexOf(asked.get(i));
            assertEquals(what + ": known " + asked.get(i), expected.getJSONArray("known").getBoolean(k), rows.known[i]);
            assertEquals(what + ": item_code " + asked.get(i), expected.getJSONArray("item_code").getLong(k),
                    rows.itemCode[i]);
            JSONArray row = expected.getJSONArray("codes").getJSONArray(k);
            int[] want = new int[row.length()];
            for (int j = 0; j < want.length; j++) {
                want[j] = row.getInt(j);
            }
            assertArrayEquals(what + ": codes " + asked.get(i), want, rows.codes[i]);
        }
    }

    @Test
    public void batchesOfAtMostTheLimitRowsInRequestOrderAndTheOovRow() throws Exception {
        ItemTableClient items = client(16, ItemTableClient.DEFAULT_MAX_CACHED);
        List<String> asked = new ArrayList<String>(ids); // 40 known ids + "no-such-item"
        asked.add(ids.get(3)); // a repeated id is fetched once
        asked.add(0, ids.get(ids.size() - 1));

        ItemRows rows = items.rows(asked);

        assertEquals("41 distinct ids in batches of 16", Arrays.asList(16, 16, 9), lookups());
        assertRowsArePython("batched", rows, asked);
        assertFalse("the unknown item is marked", rows.known[0]);
        assertEquals("the unknown item gets the OOV item code", 0, rows.itemCode[0]);
        assertEquals(expected.getInt("table_version"), items.tableVersion());
    }

    @Test
    public void theServersLimitSplitsLargeRequests() throws Exception {
        ItemTableClient items = client(0, ItemTableClient.DEFAULT_MAX_CACHED); // learns max_lookup_batch (1,024)
        List<String> asked = new ArrayList<String>();
        for (int i = 0; i < 1500; i++) {
            asked.add(i < ids.size() ? ids.get(i) : "unknown-" + i);
        }

        ItemRows rows = items.rows(asked);

        assertEquals(Arrays.asList(1024, 476), lookups());
        assertEquals(1500, rows.size());
        assertFirstRowsArePython("first ids", rows, asked.subList(0, ids.size()));
        for (int i = ids.size(); i < asked.size(); i++) {
            assertFalse(rows.known[i]);
        }
    }

    @Test
    public void cachedRowsAreServedWithoutTheNetworkUntilTheTableVersionMoves() throws Exception {
        ItemTableClient items = client(16, ItemTableClient.DEFAULT_MAX_CACHED);
        List<String> first = ids.subList(0, 20);
        items.rows(first);
        lookups();
        int version = items.tableVersion();

        ItemRows again = items.rows(first);
        List<Integer> none = lookups();
        List<String> more = new ArrayList<String>(ids.subList(15, 25)); // 5 cached, 5 new
        ItemRows mixed = items.rows(more);
        List<Integer> onlyNew = lookups();

        assertEquals("all cached: no request", new ArrayList<Integer>(), none);
        assertEquals("only the 5 uncached ids are fetched", Arrays.asList(5), onlyNew);
        assertRowsArePython("from the cache", again, first);
        assertRowsArePython("cache + fetched", mixed, more);

        proxy.tableVersionShift = 1; // the operator published a refresh
        items.refresh();
        assertEquals("a newer table drops the cache", 0, items.cached());
        ItemRows fresh = items.rows(first);
        assertEquals(Arrays.asList(16, 4), lookups());
        assertEquals(version + 1, items.tableVersion());
        assertRowsArePython("after the refresh", fresh, first);
    }

    @Test
    public void aLookupAnsweredByANewerTableRestartsWithoutMixingVersions() throws Exception {
        ItemTableClient items = client(16, ItemTableClient.DEFAULT_MAX_CACHED);
        items.rows(ids.subList(0, 10));
        lookups();
        proxy.tableVersionShift = 1; // not announced: the next lookup's answer reveals it

        List<String> asked = new ArrayList<String>(ids.subList(5, 20));
        ItemRows rows = items.rows(asked);

        assertEquals("10 new ids; the answer is v+1, so the 5 cached v rows are fetched again", Arrays.asList(10, 5),
                lookups());
        assertEquals(expected.getInt("table_version") + 1, rows.tableVersion);
        assertEquals(15, items.cached());
        assertRowsArePython("restarted", rows, asked);
    }

    @Test
    public void aFullCacheIsDroppedAndTheRowsStayRight() throws Exception {
        ItemTableClient items = client(16, 12);
        items.rows(ids.subList(0, 8));
        List<String> other = ids.subList(8, 16);

        ItemRows rows = items.rows(other);

        assertTrue("bounded: " + items.cached(), items.cached() <= 12);
        assertRowsArePython("after the drop", rows, other);
    }

    @Test
    public void aFailedLookupIsAClearErrorAndKeepsTheCache() throws Exception {
        ItemTableClient items = client(16, ItemTableClient.DEFAULT_MAX_CACHED);
        items.rows(ids.subList(0, 5));
        proxy.itemFailures = 1;
        try {
            items.rows(ids.subList(0, 10));
            fail("a failed lookup ranked anyway");
        } catch (SyncException e) {
            assertEquals(503, e.status());
            assertTrue(e.getMessage(), e.getMessage().startsWith(ItemTableClient.FAILED + "could not look up 5 candidate(s)"));
        }
        assertEquals("cached rows kept", 5, items.cached());

        proxy.itemFailures = 1;
        proxy.itemFailStatus = 404;
        proxy.itemFailBody = "{\"error\": \"no_item_table\", \"detail\": \"model 'android-test' has no item table\"}";
        try {
            items.rows(ids.subList(20, 22));
            fail("no item table, yet rows");
        } catch (SyncException e) {
            assertEquals("no_item_table", e.code());
            assertTrue(e.getMessage(), e.getMessage().contains("publishes no item table for this model"));
        }

        assertRowsArePython("the server answers again", items.rows(ids.subList(0, 10)), ids.subList(0, 10));
    }

    @Test
    public void anUnreachableServerOrAnotherModelVersionIsRefused() throws Exception {
        java.net.ServerSocket closed = new java.net.ServerSocket(0);
        int port = closed.getLocalPort();
        closed.close();
        ItemTableClient offline = new ItemTableClient(ItemTableClient.of(new ApiClient("http://127.0.0.1:" + port, "t",
                2000)), model, modelVersion, 16, 100);
        try {
            offline.rows(ids.subList(0, 3));
            fail("rows from nowhere");
        } catch (SyncException e) {
            assertEquals(0, e.status());
            assertTrue(e.getMessage(), e.getMessage().startsWith(ItemTableClient.FAILED));
        }

        ItemTableClient newer = new ItemTableClient(ItemTableClient.of(api), model, modelVersion + 1, 16, 100);
        try {
            newer.rows(ids.subList(0, 3));
            fail("a table for another model version was used");
        } catch (SyncException e) {
            assertEquals("model_version_mismatch", e.code());
            assertTrue(e.getMessage(), e.getMessage().contains("download the new model first"));
        }
        assertEquals(0, newer.cached());
    }
}
