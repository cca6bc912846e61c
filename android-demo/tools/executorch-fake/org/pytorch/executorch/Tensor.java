package org.pytorch.executorch;

import java.nio.Buffer;
import java.nio.FloatBuffer;

/** Fake of ExecuTorch's Tensor (see ../../../README.md): float32 over a FloatBuffer, int64 over a long[]. */
public abstract class Tensor {
    final long[] shape;

    Tensor(long[] shape) {
        this.shape = shape.clone();
    }

    public static Tensor fromBlob(float[] data, long[] shape) {
        return new F32(FloatBuffer.wrap(data.clone()), shape);
    }

    public static Tensor fromBlob(long[] data, long[] shape) {
        return new I64(data.clone(), shape);
    }

    public float[] getDataAsFloatArray() {
        throw new IllegalStateException("not a float32 tensor");
    }

    public Buffer getRawDataBuffer() {
        throw new IllegalStateException("no raw buffer");
    }

    int[] intShape() {
        int[] out = new int[shape.length];
        for (int i = 0; i < shape.length; i++) {
            out[i] = (int) shape[i];
        }
        return out;
    }

    long[] longs() {
        throw new IllegalStateException("not an int64 tensor");
    }

    /** float32; the buffer is the tensor's memory (as namedParameters' views of program memory). */
    static final class F32 extends Tensor {
        final FloatBuffer data;

        F32(FloatBuffer data, long[] shape) {
            super(shape);
            this.data = data;
        }

        @Override
        public float[] getDataAsFloatArray() {
            float[] out = new float[data.capacity()];
            data.rewind();
            data.get(out);
            return out;
        }

        @Override
        public Buffer getRawDataBuffer() {
            return data;
        }
    }

    static final class I64 extends Tensor {
        final long[] data;

        I64(long[] data, long[] shape) {
            super(shape);
            this.data = data;
        }

        @Override
        long[] longs() {
            return data;
        }
    }
}
