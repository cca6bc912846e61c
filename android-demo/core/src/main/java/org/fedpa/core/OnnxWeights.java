package org.fedpa.core;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Reads the initializers (named constant tensors) of an ONNX model: just enough protobuf to walk
 * ModelProto.graph (field 7) → GraphProto.initializer (field 5) → TensorProto {dims 1,
 * data_type 2, float_data 4, int64_data 7, name 8, raw_data 9, data_location 14}. The app takes
 * the student's frozen weights from the bundle's {@code inference.onnx} this way, so the bundle
 * needs no extra file for the pure-Java engine.
 */
public final class OnnxWeights {
    private static final int FLOAT = 1;
    private static final int INT64 = 7;

    private final byte[] buf;
    private int pos;
    private int limit;

    private OnnxWeights(byte[] buf) {
        this.buf = buf;
        this.limit = buf.length;
    }

    /** Every FLOAT and INT64 initializer by name; other dtypes are skipped. */
    public static Map<String, Tensor> read(byte[] model) throws BundleException {
        try {
            OnnxWeights r = new OnnxWeights(model);
            Map<String, Tensor> out = new LinkedHashMap<String, Tensor>();
            while (r.pos < r.limit) {
                long key = r.varint();
                if (key == ((7 << 3) | 2)) {
                    int end = r.lengthEnd();
                    r.graph(end, out);
                } else {
                    r.skip((int) (key & 7));
                }
            }
            return out;
        } catch (IndexOutOfBoundsException e) {
            throw new BundleException("ONNX model is truncated or not protobuf", e);
        }
    }

    private void graph(int end, Map<String, Tensor> out) throws BundleException {
        while (pos < end) {
            long key = varint();
            if (key == ((5 << 3) | 2)) {
                int tend = lengthEnd();
                tensor(tend, out);
            } else {
                skip((int) (key & 7));
            }
        }
    }

    private void tensor(int end, Map<String, Tensor> out) throws BundleException {
        long[] dims = new long[8];
        int nd = 0;
        int dtype = 0;
        String name = null;
        int rawStart = -1;
        int rawLen = 0;
        int location = 0;
        java.util.ArrayList<Float> floatData = new java.util.ArrayList<Float>();
        while (pos < end) {
            long key = varint();
            int field = (int) (key >>> 3);
            int wire = (int) (key & 7);
            if (field == 1 && wire == 0) {
                dims = grow(dims, nd);
                dims[nd++] = varint();
            } else if (field == 1 && wire == 2) {
                int e = lengthEnd();
                while (pos < e) {
                    dims = grow(dims, nd);
                    dims[nd++] = varint();
                }
            } else if (field == 2 && wire == 0) {
                dtype = (int) varint();
            } else if (field == 4 && wire == 2) {
                int e = lengthEnd();
                while (pos < e) {
                    floatData.add(Float.intBitsToFloat(fixed32()));
                }
            } else if (field == 4 && wire == 5) {
                floatData.add(Float.intBitsToFloat(fixed32()));
            } else if (field == 8 && wire == 2) {
                int e = lengthEnd();
                try {
                    name = new String(buf, pos, e - pos, "UTF-8");
                } catch (java.io.UnsupportedEncodingException ex) {
                    throw new IllegalStateException(ex);
                }
                pos = e;
            } else if (field == 9 && wire == 2) {
                int e = lengthEnd();
                rawStart = pos;
                rawLen = e - pos;
                pos = e;
            } else if (field == 14 && wire == 0) {
                location = (int) varint();
            } else {
                skip(wire);
            }
        }
        if (name == null || (dtype != FLOAT && dtype != INT64)) {
            return;
        }
        if (location != 0) {
            throw new BundleException("ONNX initializer '" + name + "' uses external data; not supported");
        }
        int[] shape = new int[nd];
        for (int i = 0; i < nd; i++) {
            shape[i] = (int) dims[i];
        }
        int n = Tensor.numel(shape);
        java.nio.ByteBuffer raw = java.nio.ByteBuffer.wrap(buf).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        if (dtype == FLOAT) {
            float[] data = new float[n];
            if (rawStart >= 0) {
                checkSize(name, rawLen, 4L * n);
                for (int i = 0; i < n; i++) {
                    data[i] = raw.getFloat(rawStart + 4 * i);
                }
            } else {
                checkSize(name, 4L * floatData.size(), 4L * n);
                for (int i = 0; i < n; i++) {
                    data[i] = floatData.get(i);
                }
            }
            out.put(name, Tensor.of(data, shape));
        } else if (rawStart >= 0) {
            checkSize(name, rawLen, 8L * n);
            long[] data = new long[n];
            for (int i = 0; i < n; i++) {
                data[i] = raw.getLong(rawStart + 8 * i);
            }
            out.put(name, Tensor.ofLongs(data, shape));
        }
    }

    private static void checkSize(String name, long have, long want) throws BundleException {
        if (have != want) {
            throw new BundleException("ONNX initializer '" + name + "' has " + have + " bytes, its dims need " + want);
        }
    }

    private static long[] grow(long[] a, int n) {
        return n < a.length ? a : Arrays.copyOf(a, a.length * 2);
    }

    private long varint() {
        long result = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            byte b = buf[pos++];
            result |= (long) (b & 0x7f) << shift;
            if ((b & 0x80) == 0) {
                return result;
            }
        }
        throw new IndexOutOfBoundsException("varint too long at " + pos);
    }

    private int fixed32() {
        int v = (buf[pos] & 0xff) | (buf[pos + 1] & 0xff) << 8 | (buf[pos + 2] & 0xff) << 16 | (buf[pos + 3] & 0xff) << 24;
        pos += 4;
        return v;
    }

    private int lengthEnd() {
        long len = varint();
        long end = pos + len;
        if (len < 0 || end > limit) {
            throw new IndexOutOfBoundsException("length " + len + " at " + pos + " runs past the end");
        }
        return (int) end;
    }

    private void skip(int wire) {
        switch (wire) {
            case 0:
                varint();
                break;
            case 1:
                pos += 8;
                break;
            case 2:
                pos = lengthEnd();
                break;
            case 5:
                pos += 4;
                break;
            default:
                throw new IndexOutOfBoundsException("unsupported protobuf wire type " + wire + " at " + pos);
        }
        if (pos > limit) {
            throw new IndexOutOfBoundsException("field runs past the end");
        }
    }
}
