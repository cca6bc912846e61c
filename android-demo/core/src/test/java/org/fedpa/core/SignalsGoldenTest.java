package org.fedpa.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/**
 * The phone's program inputs equal the Python edge client's, exactly (tools/make_signals_golden.py:
 * same bundle, same candidates, same item-table rows from the same server, same interactions):
 * the feed's {@code x} before and after the interactions, every stored training row (its history
 * from strictly earlier interactions only, as {@code DeviceSignals.replay} computes), and the feed
 * after a restart (history persisted) or after losing {@code history.json} (rebuilt from the log).
 */
public class SignalsGoldenTest {
    private static final Charset UTF8 = Charset.forName("UTF-8");
    private JSONObject golden;
    private FlakyProxy proxy;
    private File root;

    @Before
    public void setUp() throws Exception {
        golden = new JSONObject(new String(Bundle.readFile(new File(Fixtures.optional("fedpa.signals"))), UTF8));
        proxy = new FlakyProxy(Fixtures.optional("fedpa.server"));
        root = Fixtures.tempDir("signals");
    }

    @After
    public void tearDown() {
        if (proxy != null) {
            proxy.stop();
        }
        if (root != null) {
            BundleInstaller.deleteTree(root);
        }
    }

    private FedPAClient phone(boolean setup) throws Exception {
        FedPAClient c = new FedPAClient(new LocalStore(root), new Random(5), TrainingConfig.defaults(), 10000);
        c.configure(proxy.url(), golden.getString("model_id"));
        c.setPublisherKey(Fixtures.publisherKey());
        if (setup) {
            c.setup(null);
        }
        c.setUserCodes(longs(golden.getJSONArray("user_codes")));
        return c;
    }

    private static long[] longs(JSONArray a) throws Exception {
        long[] out = new long[a.length()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.getLong(i);
        }
        return out;
    }

    private static long[] flat(JSONArray rows) throws Exception {
        List<long[]> parts = new ArrayList<long[]>();
        int n = 0;
        for (int i = 0; i < rows.length(); i++) {
            parts.add(longs(rows.getJSONArray(i)));
            n += parts.get(i).length;
        }
        long[] out = new long[n];
        int k = 0;
        for (long[] p : parts) {
            System.arraycopy(p, 0, out, k, p.length);
            k += p.length;
        }
        return out;
    }

    private List<Catalog.Item> candidates() throws Exception {
        List<Catalog.Item> out = new ArrayList<Catalog.Item>();
        JSONArray ids = golden.getJSONArray("ids");
        for (int i = 0; i < ids.length(); i++) {
            out.add(new Catalog.Item(ids.getString(i), ids.getString(i), longs(golden.getJSONArray("item_codes").getJSONArray(i))));
        }
        return out;
    }

    private int column(FedPAClient c, String name) throws Exception {
        return c.model().manifest().featureIndex(name);
    }

    @Test
    public void rankingAndTrainingRowsEqualThePythonEdgeClient() throws Exception {
        FedPAClient c = phone(true);
        List<Catalog.Item> items = candidates();
        int nf = c.model().manifest().config.nFeatures();
        assertTrue("the test bundle has item-table and history columns", c.signals().needsItems() && c.signals().hasHistory());

        long[] before = c.inputs(items);
        JSONArray steps = golden.getJSONArray("steps");
        byte[] midway = null;
        for (int k = 0; k < steps.length(); k++) {
            JSONObject s = steps.getJSONObject(k);
            c.label(new Catalog.Item(s.getString("id"), "", longs(s.getJSONArray("item_codes"))), s.getInt("label"));
            if (k == steps.length() / 2) {
                midway = Bundle.readFile(new File(root, LocalStore.HISTORY)); // a history that is behind the log
            }
        }
        List<Interaction> log = c.store().loadInteractions();
        long[] after = c.inputs(items);

        assertArrayEquals("x before any interaction", flat(golden.getJSONArray("x_before")), before);
        assertArrayEquals("every stored training row (history of strictly earlier rows only)",
                flat(golden.getJSONArray("rows")), c.trainingInputs(log));
        assertArrayEquals("x after the interactions", flat(golden.getJSONArray("x_after")), after);
        for (int k = 1; k < log.size(); k++) {
            assertTrue("timestamps strictly increase", log.get(k).timestamp > log.get(k - 1).timestamp);
        }
        int oov = golden.getJSONArray("ids").length() - 1; // "not-in-the-table-0"
        assertEquals("an unknown item ranks with the OOV item code", 0, after[oov * nf + column(c, "item_code")]);
        assertEquals(steps.length(), c.signals().observed());

        FedPAClient restarted = phone(false); // a new process: the store only
        assertArrayEquals("after a restart (history.json)", flat(golden.getJSONArray("x_reopened")),
                restarted.inputs(items));

        AtomicFiles.write(new File(root, LocalStore.HISTORY), java.util.Arrays.copyOfRange(midway,
                midway.length - payloadLength(midway), midway.length)); // as if the app died after the log write
        FedPAClient caughtUp = phone(false);
        assertArrayEquals("a history behind the log is caught up", flat(golden.getJSONArray("x_after")),
                caughtUp.inputs(items));
        assertEquals(steps.length(), caughtUp.signals().observed());

        AtomicFiles.delete(new File(root, LocalStore.HISTORY));
        FedPAClient rebuilt = phone(false);
        assertArrayEquals("a lost history is rebuilt from the log", flat(golden.getJSONArray("x_after")),
                rebuilt.inputs(items));
    }

    /** The payload length of an AtomicFiles file ("FEDPA1 sha len\n" + payload). */
    private static int payloadLength(byte[] file) {
        int nl = 0;
        while (file[nl] != '\n') {
            nl++;
        }
        String[] head = new String(file, 0, nl, UTF8).split(" ");
        return Integer.parseInt(head[2]);
    }

    @Test
    public void aRoundTrainsOnTheStoredRowsAndNoRequestCarriesTheHistory() throws Exception {
        FedPAClient c = phone(true);
        JSONArray steps = golden.getJSONArray("steps");
        for (int k = 0; k < steps.length(); k++) {
            JSONObject s = steps.getJSONObject(k);
            c.label(new Catalog.Item(s.getString("id"), "", longs(s.getJSONArray("item_codes"))), s.getInt("label"));
        }
        int lookupsBefore = proxy.lookups.size();

        FedPAClient.RoundResult r = c.trainAndSync(null);

        assertEquals(r.detail, "accepted", r.status);
        assertEquals(steps.length(), r.examples);
        assertEquals("training reads the stored rows: no lookup", lookupsBefore, proxy.lookups.size());
        String history = new String(Bundle.readFile(new File(root, LocalStore.HISTORY)), UTF8);
        JSONObject state = new JSONObject(history.substring(history.indexOf('\n') + 1)).getJSONObject("state");
        String counts = state.getJSONArray("counts").toString();
        assertTrue("the history has counts to leak", counts.length() > 20);
        synchronized (proxy.bodies) {
            for (byte[] body : proxy.bodies) {
                String text = new String(body, Charset.forName("ISO-8859-1"));
                assertFalse("a request carried the history", text.contains(counts) || text.contains("total_clicks")
                        || text.contains("hist_"));
            }
        }
    }
}
