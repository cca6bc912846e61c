package org.fedpa.core;

import static org.junit.Assert.assertEquals;

import java.io.File;
import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.Test;

/** Golden.perturbation against fedpa.runtime.golden (tools/make_fixtures.py perturbation.json), bit for bit. */
public class GoldenPerturbationTest {
    @Test
    public void perturbationAndPerturbedValuesMatchPythonBitForBit() throws Exception {
        File f = Fixtures.fixture("perturbation.json");
        JSONArray cases = new JSONArray(new String(Bundle.readFile(f), "UTF-8"));
        assertEquals(4, cases.length());
        for (int c = 0; c < cases.length(); c++) {
            JSONObject k = cases.getJSONObject(c);
            JSONArray noiseBits = k.getJSONArray("noise_bits");
            JSONArray startBits = k.getJSONArray("start_bits");
            JSONArray wantBits = k.getJSONArray("perturbed_bits");
            int n = noiseBits.length();
            float scale = (float) k.getDouble("scale");
            float[] noise = Golden.perturbation((int) k.getLong("seed"), k.getInt("index"), n);
            for (int i = 0; i < n; i++) {
                assertEquals("case " + c + " noise[" + i + "]", noiseBits.getInt(i), Float.floatToRawIntBits(noise[i]));
                float start = Float.intBitsToFloat(startBits.getInt(i));
                float got = start + noise[i] * scale;
                assertEquals("case " + c + " perturbed[" + i + "]", wantBits.getInt(i), Float.floatToRawIntBits(got));
            }
        }
    }
}
