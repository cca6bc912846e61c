package org.fedpa.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * The safetensors format (what {@code fedpa.payload} reads and writes): an 8-byte little-endian
 * header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}},
 * then the raw little-endian tensor bytes. F32 and I64 both ways; U8 and I32 (item-table codes) are read
 * widened to I64; anything else is refused by name.
 */
public final class SafeTensors {
    private static final Charset UTF8 = Charset.forName("UTF-8");
    private static final String METADATA = "__metadata__";
    private static final long MAX_HEADER = 100L * 1024 * 1024;

    private final Map<String, Tensor> tensors;
    private final Map<String, String> metadata;

    public SafeTensors(Map<String, Tensor> tensors, Map<String, String> metadata) {
        this.tensors = tensors;
        this.metadata = metadata;
    }

    /** Tensors in file order. */
    public Map<String, Tensor> tensors() {
        return tensors;
    }

    /** The string metadata ({@code fedpa.update} lives here on uploads); empty if none. */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** Parse a safetensors body; every structural problem is a PayloadException naming it. */
    public static SafeTensors decode(byte[] bytes) throws PayloadException {
        if (bytes.length < 8) {
            throw new PayloadException("safetensors body of " + bytes.length + " bytes is too short");
        }
        ByteBuffer buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        long headerLen = buf.getLong(0);
        if (headerLen < 2 || headerLen > MAX_HEADER || 8 + headerLen > bytes.length) {
            throw new PayloadException("safetensors header length " + headerLen + " is invalid for a body of "
                    + bytes.length + " bytes");
        }
        int dataStart = 8 + (int) headerLen;
        JSONObject header;
        try {
            header = new JSONObject(new String(bytes, 8, (int) headerLen, UTF8).trim());
        } catch (JSONException e) {
            throw new PayloadException("safetensors header is not valid JSON: " + e.getMessage(), e);
        }
        Map<String, String> meta = new LinkedHashMap<String, String>();
        List<Object[]> entries = new ArrayList<Object[]>();
        try {
            Iterator<String> keys = header.keys();
            while (keys.hasNext()) {
                String name = keys.next();
                JSONObject info = header.getJSONObject(name);
                if (METADATA.equals(name)) {
                    Iterator<String> mk = info.keys();
                    while (mk.hasNext()) {
                        String k = mk.next();
                        meta.put(k, info.getString(k));
                    }
                    continue;
                }
                JSONArray offsets = info.getJSONArray("data_offsets");
                entries.add(new Object[] {name, info, offsets.getLong(0), offsets.getLong(1)});
            }
        } catch (JSONException e) {
            throw new PayloadException("safetensors header is malformed: " + e.getMessage(), e);
        }
        // Sort by (start, end) offset: the file's order, whatever order the JSON object gave us.
        Collections.sort(entries, new java.util.Comparator<Object[]>() {
            @Override
            public int compare(Object[] a, Object[] b) {
                int c = Long.compare((Long) a[2], (Long) b[2]);
                return c != 0 ? c : Long.compare((Long) a[3], (Long) b[3]); // empty tensors first
            }
        });
        Map<String, Tensor> out = new LinkedHashMap<String, Tensor>();
        long expectedStart = 0;
        for (Object[] e : entries) {
            String name = (String) e[0];
            out.put(name, readTensor(name, (JSONObject) e[1], (Long) e[2], (Long) e[3], expectedStart, buf, dataStart));
            expectedStart = (Long) e[3];
        }
        if (dataStart + expectedStart != bytes.length) {
            throw new PayloadException("safetensors data section has " + (bytes.length - dataStart)
                    + " bytes but the header covers " + expectedStart);
        }
        return new SafeTensors(out, meta);
    }

    private static Tensor readTensor(String name, JSONObject info, long begin, long end, long expectedStart,
                                     ByteBuffer buf, int dataStart) throws PayloadException {
        String dtype;
        int[] shape;
        try {
            dtype = info.getString("dtype");
            JSONArray dims = info.getJSONArray("shape");
            shape = new int[dims.length()];
            for (int i = 0; i < shape.length; i++) {
                shape[i] = dims.getInt(i);
            }
        } catch (JSONException ex) {
            throw new PayloadException("tensor '" + name + "': malformed header entry: " + ex.getMessage(), ex);
        }
        // U8, I8 and I32 (item-table codes and vectors) are read widened to I64; F32 and I64 are written too
        int width = Tensor.F32.equals(dtype) || "I32".equals(dtype) ? 4 : Tensor.I64.equals(dtype) ? 8
                : "U8".equals(dtype) || "I8".equals(dtype) ? 1 : 0;
        if (width == 0) {
            throw new PayloadException("tensor '" + name + "' has dtype " + dtype
                    + "; only F32, I64, I32, I8 and U8 are supported");
        }
        int n;
        try {
            n = Tensor.numel(shape);
        } catch (IllegalArgumentException ex) {
            throw new PayloadException("tensor '" + name + "': " + ex.getMessage(), ex);
        }
        if (begin != expectedStart || end - begin != (long) n * width) {
            throw new PayloadException("tensor '" + name + "' has data_offsets [" + begin + ", " + end
                    + "], expected " + ((long) n * width) + " bytes from offset " + expectedStart);
        }
        if (dataStart + end > buf.capacity()) {
            throw new PayloadException("tensor '" + name + "' runs past the end of the body (truncated file?)");
        }
        int pos = dataStart + (int) begin;
        if ("U8".equals(dtype) || "I8".equals(dtype) || "I32".equals(dtype)) {
            long[] wide = new long[n];
            for (int i = 0; i < n; i++) {
                wide[i] = "U8".equals(dtype) ? (buf.get(pos + i) & 0xFF) : width == 1 ? buf.get(pos + i)
                        : buf.getInt(pos + 4 * i);
            }
            return Tensor.ofLongs(wide, shape);
        }
        if (width == 4) {
            float[] data = new float[n];
            for (int i = 0; i < n; i++) {
                data[i] = buf.getFloat(pos + 4 * i);
            }
            return Tensor.of(data, shape);
        }
        long[] data = new long[n];
        for (int i = 0; i < n; i++) {
            data[i] = buf.getLong(pos + 8 * i);
        }
        return Tensor.ofLongs(data, shape);
    }

    /** Serialise tensors (sorted by name, contiguous) with optional string metadata. */
    public static byte[] encode(Map<String, Tensor> tensors, Map<String, String> metadata) {
        TreeMap<String, Tensor> sorted = new TreeMap<String, Tensor>(tensors);
        JSONObject header = new JSONObject();
        long offset = 0;
        try {
            if (metadata != null && !metadata.isEmpty()) {
                header.put(METADATA, new JSONObject(new LinkedHashMap<String, String>(metadata)));
            }
            for (Map.Entry<String, Tensor> e : sorted.entrySet()) {
                Tensor t = e.getValue();
                long size = (long) t.numel() * (Tensor.F32.equals(t.dtype()) ? 4 : 8);
                JSONObject info = new JSONObject();
                info.put("dtype", t.dtype());
                JSONArray dims = new JSONArray();
                for (int d : t.shape()) {
                    dims.put(d);
                }
                info.put("shape", dims);
                JSONArray offsets = new JSONArray();
                offsets.put(offset);
                offsets.put(offset + size);
                info.put("data_offsets", offsets);
                header.put(e.getKey(), info);
                offset += size;
            }
        } catch (JSONException ex) {
            throw new IllegalStateException("cannot build safetensors header", ex);
        }
        byte[] json = header.toString().getBytes(UTF8);
        int padded = (json.length + 7) / 8 * 8; // the reference writer aligns data to 8 bytes with spaces
        ByteBuffer buf = ByteBuffer.allocate(8 + padded + (int) offset).order(ByteOrder.LITTLE_ENDIAN);
        buf.putLong(padded);
        buf.put(json);
        for (int i = json.length; i < padded; i++) {
            buf.put((byte) ' ');
        }
        for (Tensor t : sorted.values()) {
            if (Tensor.F32.equals(t.dtype())) {
                for (float v : t.data()) {
                    buf.putFloat(v);
                }
            } else {
                for (long v : t.longs()) {
                    buf.putLong(v);
                }
            }
        }
        return buf.array();
    }

    /** Convenience: encode to an output stream-friendly byte array with no metadata. */
    public static byte[] encode(Map<String, Tensor> tensors) {
        return encode(tensors, null);
    }
}
