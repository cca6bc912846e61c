package org.fedpa.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.Test;

/**
 * SharedState.initialBank against fedpa.state.SharedStateSpec.initial_bank (tools/make_fixtures.py
 * initial_bank.json), bit for bit, and its refusals of damaged stored tensors or law fields.
 */
public class InitialBankTest {
    private static JSONArray cases() throws Exception {
        File f = Fixtures.fixture("initial_bank.json");
        return new JSONArray(new String(Bundle.readFile(f), "UTF-8"));
    }

    private static Map<String, Tensor> stored(JSONObject c) throws Exception {
        Map<String, Tensor> out = new LinkedHashMap<String, Tensor>();
        JSONObject s = c.getJSONObject("stored");
        Iterator<String> names = s.keys();
        while (names.hasNext()) {
            String name = names.next();
            JSONArray bits = s.getJSONObject(name).getJSONArray("bits");
            float[] data = new float[bits.length()];
            for (int i = 0; i < data.length; i++) {
                data[i] = Float.intBitsToFloat(bits.getInt(i));
            }
            out.put(name, Tensor.of(data, Manifest.ints(s.getJSONObject(name).getJSONArray("shape"))));
        }
        return out;
    }

    private static Map<String, Tensor> bank(JSONObject sharedState, Map<String, Tensor> stored) throws Exception {
        List<Manifest.SharedTensor> tensors = Manifest.sharedTensors(sharedState);
        return SharedState.initialBank(tensors, Manifest.initialBank(sharedState, tensors), stored);
    }

    @Test
    public void bankMatchesPythonBitForBit() throws Exception {
        JSONArray cases = cases();
        assertEquals(2, cases.length());
        for (int c = 0; c < cases.length(); c++) {
            JSONObject k = cases.getJSONObject(c);
            Map<String, Tensor> got = bank(k.getJSONObject("shared_state"), stored(k));
            JSONObject want = k.getJSONObject("bank");
            List<String> order = new ArrayList<String>();
            Iterator<String> names = want.keys();
            while (names.hasNext()) {
                order.add(names.next());
            }
            assertEquals("case " + c + ": wire names", want.length(), got.size());
            int drawn = 0;
            for (Map.Entry<String, Tensor> e : got.entrySet()) {
                JSONArray bits = want.getJSONArray(e.getKey());
                float[] data = e.getValue().data();
                assertEquals(e.getKey(), bits.length(), data.length);
                for (int i = 0; i < data.length; i++) {
                    assertEquals("case " + c + " " + e.getKey() + "[" + i + "]", bits.getInt(i),
                            Float.floatToRawIntBits(data[i]));
                }
                drawn += e.getKey().contains("lora_A@") ? 1 : 0;
            }
            assertTrue("case " + c + " draws group tensors", drawn > 0);
        }
    }

    @Test
    public void missingOrDamagedStoredTensorIsRefusedNamingIt() throws Exception {
        JSONObject k = cases().getJSONObject(0);
        Map<String, Tensor> stored = stored(k);
        String name = stored.keySet().iterator().next();
        Map<String, Tensor> missing = new LinkedHashMap<String, Tensor>(stored);
        missing.remove(name);
        try {
            bank(k.getJSONObject("shared_state"), missing);
            fail("materialised a bank without " + name);
        } catch (PayloadException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("missing [" + name + "]"));
        }
        Map<String, Tensor> reshaped = new LinkedHashMap<String, Tensor>(stored);
        reshaped.put(name, Tensor.of(new float[] {1f, 2f, 3f}, new int[] {3}));
        try {
            bank(k.getJSONObject("shared_state"), reshaped);
            fail("materialised a bank from a reshaped " + name);
        } catch (PayloadException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("stored initial tensor '" + name + "'"));
        }
        Map<String, Tensor> nan = new LinkedHashMap<String, Tensor>(stored);
        float[] data = stored.get(name).data().clone();
        data[0] = Float.NaN;
        nan.put(name, Tensor.of(data, stored.get(name).shape()));
        try {
            bank(k.getJSONObject("shared_state"), nan);
            fail("materialised a bank from a NaN " + name);
        } catch (PayloadException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("contains NaN"));
        }
    }

    @Test
    public void badLawFieldsAreRefused() throws Exception {
        String[][] edits = {
            {"law", "\"torch-normal\"", "initial.law 'torch-normal' is unknown"},
            {"seed", "-1", "seed -1 is not a 32-bit unsigned integer"},
            {"seed", "4294967296", "seed 4294967296 is not a 32-bit unsigned integer"},
            {"drawn", "{\"layers.0.nowhere.lora_A\": 0.5}", "names parameter 'layers.0.nowhere.lora_A'"},
            {"drawn", "{\"layers.0.gate.w1\": 0.1}", "must be a positive float32 value, got 0.1"},
        };
        for (String[] edit : edits) {
            JSONObject sharedState = new JSONObject(cases().getJSONObject(0).getJSONObject("shared_state").toString());
            sharedState.getJSONObject("initial").put(edit[0], new JSONObject("{\"v\": " + edit[1] + "}").get("v"));
            try {
                Manifest.initialBank(sharedState, Manifest.sharedTensors(sharedState));
                fail("accepted " + edit[0] + " = " + edit[1]);
            } catch (BundleException e) {
                assertTrue(e.getMessage(), e.getMessage().contains(edit[2]));
            }
        }
        JSONObject none = new JSONObject(cases().getJSONObject(0).getJSONObject("shared_state").toString());
        none.remove("initial");
        try {
            Manifest.initialBank(none, Manifest.sharedTensors(none));
            fail("accepted a shared_state without its initial law");
        } catch (BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("shared_state.initial"));
        }
    }
}
