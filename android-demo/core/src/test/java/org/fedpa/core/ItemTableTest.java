package org.fedpa.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.Test;

/**
 * ApiClient.lookupItems against the real aggregator serving the table test.sh computed with
 * fedpa-export items: rows in request order, batched, the unknown item marked — equal to what
 * the Python table answers for the same ids.
 */
public class ItemTableTest {
    @Test
    public void lookupMatchesThePythonTableInSmallBatches() throws Exception {
        String server = Fixtures.optional("fedpa.server");
        JSONObject expected = new JSONObject(new String(Bundle.readFile(new File(Fixtures.optional("fedpa.items"))),
                Charset.forName("UTF-8")));
        String model = Fixtures.required("fedpa.model");
        ApiClient api = new ApiClient(server, null, 10000);
        api.register(model);
        JSONArray ids = expected.getJSONArray("ids");
        List<String> request = new ArrayList<String>();
        for (int i = 0; i < ids.length(); i++) {
            request.add(ids.getString(i));
        }

        JSONObject status = api.itemTable(model);
        ItemRows rows = api.lookupItems(model, request, 16); // 41 ids → 3 requests

        assertEquals(expected.getInt("table_version"), status.getInt("table_version"));
        assertEquals(expected.getInt("table_version"), rows.tableVersion);
        assertEquals(request.size(), rows.size());
        JSONArray codes = expected.getJSONArray("codes");
        for (int i = 0; i < rows.size(); i++) {
            assertEquals("known " + i, expected.getJSONArray("known").getBoolean(i), rows.known[i]);
            assertEquals("item_code " + i, expected.getJSONArray("item_code").getLong(i), rows.itemCode[i]);
            JSONArray row = codes.getJSONArray(i);
            int[] want = new int[row.length()];
            for (int j = 0; j < want.length; j++) {
                want[j] = row.getInt(j);
            }
            assertArrayEquals("codes " + i, want, rows.codes[i]);
            if (!expected.isNull("vectors")) { // format 2: the dequantised item vector, bit for bit
                JSONArray v = expected.getJSONArray("vectors").getJSONArray(i);
                float[] wantV = new float[v.length()];
                for (int j = 0; j < wantV.length; j++) {
                    wantV[j] = (float) v.getDouble(j);
                }
                assertArrayEquals("vector " + i, wantV, rows.vectors[i], 0f);
            }
        }
        assertFalse(rows.known[rows.size() - 1]);
        assertTrue("the full-features test bundle takes item vectors", !expected.isNull("vectors"));
    }

    @Test
    public void aFormat1AnswerIsRefusedPrecisely() throws Exception {
        Map<String, Tensor> t = new LinkedHashMap<String, Tensor>();
        t.put("item_code", Tensor.ofLongs(new long[] {1}, new int[] {1}));
        t.put("codes", Tensor.ofLongs(new long[] {0}, new int[] {1, 1}));
        t.put("known", Tensor.ofLongs(new long[] {1}, new int[] {1}));
        Map<String, String> meta = new LinkedHashMap<String, String>();
        meta.put("fedpa.items", "{\"format_version\": 1, \"model_id\": \"m\", \"model_version\": 1, "
                + "\"table_version\": 1}");
        try {
            ItemRows.decode(SafeTensors.encode(t, meta));
            fail("decoded a format-1 answer");
        } catch (PayloadException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("format_version 1 carries no item vectors"));
        }
    }
}
