package org.fedpa.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.FileOutputStream;
import java.io.InputStream;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import org.json.JSONArray;
import org.json.JSONObject;
import org.junit.Test;

/** safetensors bytes shared with Python's fedpa.payload, both directions, and corrupt input. */
public class SafeTensorsTest {
    @Test
    public void readsWhatPythonWrote() throws Exception {
        SafeTensors st = Fixtures.read(Fixtures.fixture("roundtrip.safetensors"));
        JSONObject ref = new JSONObject(new String(Bundle.readFile(Fixtures.fixture("roundtrip.json")), "UTF-8"));
        JSONObject tensors = ref.getJSONObject("tensors");
        assertEquals(tensors.length(), st.tensors().size());
        Iterator<?> names = tensors.keys();
        while (names.hasNext()) {
            String name = (String) names.next();
            JSONObject t = tensors.getJSONObject(name);
            Tensor got = st.tensors().get(name);
            assertArrayEquals(name, Manifest.ints(t.getJSONArray("shape")), got.shape());
            JSONArray values = t.getJSONArray("values");
            for (int i = 0; i < values.length(); i++) {
                if (Tensor.I64.equals(got.dtype())) {
                    assertEquals(name + "[" + i + "]", values.getLong(i), got.longs()[i]);
                } else {
                    assertEquals(name + "[" + i + "]", (float) values.getDouble(i), got.data()[i], 0f);
                }
            }
        }
        JSONObject meta = ref.getJSONObject("metadata");
        assertEquals(meta.getString("fedpa.update"), st.metadata().get("fedpa.update"));
        assertEquals("héllo", st.metadata().get("note"));
    }

    @Test
    public void pythonReadsWhatJavaWrote() throws Exception {
        Map<String, Tensor> t = new LinkedHashMap<String, Tensor>();
        t.put("layers.1.gate.b2", Tensor.of(new float[] {1.5f, -2.25f, 3e-8f}, 1, 3));
        t.put("layers.0.groups.g.lora_B@2", Tensor.of(new float[] {0f, -0f, 1e30f, 7f}, 2, 2));
        t.put("codes", Tensor.ofLongs(new long[] {-1, 1L << 50}, 2));
        Map<String, String> meta = new LinkedHashMap<String, String>();
        meta.put("fedpa.update", "{\"nonce\": \"x\"}");
        File out = File.createTempFile("java-written", ".safetensors");
        FileOutputStream fo = new FileOutputStream(out);
        fo.write(SafeTensors.encode(t, meta));
        fo.close();
        String script = "import sys, json, numpy as np\n"
                + "from fedpa.payload import decode_tensors\n"
                + "from safetensors import safe_open\n"
                + "d = decode_tensors(open(sys.argv[1], 'rb').read())\n"
                + "assert d['layers.1.gate.b2'].dtype == np.float32 and d['layers.1.gate.b2'].shape == (1, 3)\n"
                + "assert d['layers.1.gate.b2'].tolist() == [[1.5, -2.25, np.float32(3e-8)]]\n"
                + "assert d['layers.0.groups.g.lora_B@2'][1].tolist() == [np.float32(1e30), 7.0]\n"
                + "assert d['codes'].dtype == np.int64 and d['codes'].tolist() == [-1, 2**50]\n"
                + "with safe_open(sys.argv[1], 'np') as f: assert f.metadata() == {'fedpa.update': '{\"nonce\": \"x\"}'}\n"
                + "print('python ok')\n";
        String output = runPython(script, out.getPath());
        assertTrue(output, output.contains("python ok"));
        out.delete();
    }

    static String runPython(String script, String arg) throws Exception {
        String python = Fixtures.required("fedpa.python");
        ProcessBuilder pb = new ProcessBuilder(python, "-c", script, arg);
        pb.redirectErrorStream(true);
        Process p = pb.start();
        InputStream in = p.getInputStream();
        String output = new String(Bundle.readAll(in), "UTF-8");
        int rc = p.waitFor();
        assertEquals("python failed:\n" + output, 0, rc);
        return output;
    }

    @Test
    public void javaRoundTripKeepsEverything() throws Exception {
        Map<String, Tensor> t = new LinkedHashMap<String, Tensor>();
        t.put("b", Tensor.of(new float[] {Float.MIN_VALUE, Float.MAX_VALUE}, 2));
        t.put("a", Tensor.of(new float[0], 0, 3));
        SafeTensors back = SafeTensors.decode(SafeTensors.encode(t));
        assertArrayEquals(t.get("b").data(), back.tensors().get("b").data(), 0f);
        assertArrayEquals(new int[] {0, 3}, back.tensors().get("a").shape());
        assertTrue(back.metadata().isEmpty());
    }

    private static void refused(byte[] body, String expectInMessage) {
        try {
            SafeTensors.decode(body);
            fail("decoded a corrupt body");
        } catch (PayloadException e) {
            assertTrue(e.getMessage(), e.getMessage().contains(expectInMessage));
        }
    }

    @Test
    public void corruptBodiesAreRefusedWithAReason() throws Exception {
        Map<String, Tensor> t = new LinkedHashMap<String, Tensor>();
        t.put("w", Tensor.of(new float[] {1, 2, 3, 4}, 2, 2));
        byte[] good = SafeTensors.encode(t);
        refused(new byte[3], "too short");
        refused(java.util.Arrays.copyOf(good, good.length - 1), "truncated");
        refused(java.util.Arrays.copyOf(good, good.length + 1), "data section");
        byte[] huge = good.clone();
        huge[0] = (byte) 0xff;
        huge[5] = 0x7f;
        refused(huge, "header length");
        byte[] notJson = good.clone();
        notJson[8] = 'x';
        refused(notJson, "not valid JSON");
        String header = "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
        refused(withHeader(header, 4), "BF16");
        refused(withHeader("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4), "data_offsets");
    }

    private static byte[] withHeader(String json, int dataBytes) throws Exception {
        byte[] h = json.getBytes("UTF-8");
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(8 + h.length + dataBytes).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        return b.array();
    }
}
