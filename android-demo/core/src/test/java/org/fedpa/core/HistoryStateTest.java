package org.fedpa.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.nio.charset.Charset;
import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.Test;

/** HistoryState against fedpa.signals.HistoryState's golden values (tools/make_fixtures.py history.json). */
public class HistoryStateTest {
    private static JSONObject fixture() throws Exception {
        File f = Fixtures.fixture("history.json");
        return new JSONObject(new String(Bundle.readFile(f), Charset.forName("UTF-8")));
    }

    private static long[] row(JSONArray a) throws Exception {
        long[] out = new long[a.length()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.getLong(i);
        }
        return out;
    }

    private static void assertCodes(HistoryState state, JSONArray probe, JSONArray expected, String when)
            throws Exception {
        for (int r = 0; r < probe.length(); r++) {
            assertArrayEquals(when + ", probe row " + r, row(expected.getJSONArray(r)),
                    state.codes(row(probe.getJSONArray(r))));
        }
    }

    @Test
    public void codesMatchPythonAfterEveryObservation() throws Exception {
        JSONObject fx = fixture();
        HistoryState state = new HistoryState(fx.getJSONObject("feature_schema"));
        JSONArray probe = fx.getJSONArray("probe");
        JSONArray steps = fx.getJSONArray("steps");

        for (int s = 0; s < steps.length(); s++) {
            JSONObject step = steps.getJSONObject(s);
            assertCodes(state, probe, step.getJSONArray("probe_codes"), "before step " + s);
            state.observe(row(step.getJSONArray("x")), step.getDouble("y"));
        }

        assertCodes(state, probe, fx.getJSONArray("final_codes"), "at the end");
        assertEquals(steps.length(), state.total());
        assertArrayEquals(new int[] {3, 4, 5, 6}, state.positions());
    }

    @Test
    public void jsonRoundTripAndPythonStateLoad() throws Exception {
        JSONObject fx = fixture();
        JSONObject schema = fx.getJSONObject("feature_schema");
        HistoryState fromPython = new HistoryState(schema);
        fromPython.load(fx.getJSONObject("state"));
        HistoryState again = new HistoryState(schema);

        again.load(new JSONObject(fromPython.toJson().toString()));

        assertCodes(fromPython, fx.getJSONArray("probe"), fx.getJSONArray("final_codes"), "python state");
        assertCodes(again, fx.getJSONArray("probe"), fx.getJSONArray("final_codes"), "java round trip");
        long[] full = row(fx.getJSONArray("probe").getJSONArray(0));
        again.fill(full);
        assertArrayEquals(row(fx.getJSONArray("final_codes").getJSONArray(0)),
                new long[] {full[3], full[4], full[5], full[6]});
    }

    @Test
    public void refusesAStateKeptForOtherFields() throws Exception {
        JSONObject fx = fixture();
        HistoryState state = new HistoryState(fx.getJSONObject("feature_schema"));
        JSONObject other = fx.getJSONObject("state");
        other.put("fields", new JSONArray().put("cat"));
        try {
            state.load(other);
            fail("a state for other fields was loaded");
        } catch (StoreException expected) {
            assertTrue(expected.getMessage(), expected.getMessage().contains("rebuild"));
        }
    }
}
