package org.fedpa.core;

import java.util.Arrays;

/**
 * A dense row-major tensor of float32 ({@code F32}) or int64 ({@code I64}) values: the two dtypes
 * FedPA puts on the wire (personalisation tensors) and in golden vectors (feature codes).
 */
public final class Tensor {
    public static final String F32 = "F32";
    public static final String I64 = "I64";

    private final String dtype;
    private final int[] shape;
    private final float[] floats;
    private final long[] longs;

    private Tensor(String dtype, int[] shape, float[] floats, long[] longs) {
        this.dtype = dtype;
        this.shape = shape.clone();
        this.floats = floats;
        this.longs = longs;
        int n = numel(shape);
        int have = floats != null ? floats.length : longs.length;
        if (n != have) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " needs " + n
                    + " values, got " + have);
        }
    }

    /** A float32 tensor that owns {@code data} (not copied). */
    public static Tensor of(float[] data, int... shape) {
        return new Tensor(F32, shape, data, null);
    }

    /** An int64 tensor that owns {@code data} (not copied). */
    public static Tensor ofLongs(long[] data, int... shape) {
        return new Tensor(I64, shape, null, data);
    }

    public static Tensor zeros(int... shape) {
        return of(new float[numel(shape)], shape);
    }

    public static int numel(int[] shape) {
        long n = 1;
        for (int d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("negative dimension in " + Arrays.toString(shape));
            }
            n *= d;
            if (n > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("tensor too large: " + Arrays.toString(shape));
            }
        }
        return (int) n;
    }

    public String dtype() {
        return dtype;
    }

    public int[] shape() {
        return shape.clone();
    }

    public int dim(int i) {
        return shape[i];
    }

    public int rank() {
        return shape.length;
    }

    public int numel() {
        return numel(shape);
    }

    /** The float32 values (the live array, not a copy). */
    public float[] data() {
        if (floats == null) {
            throw new IllegalStateException("tensor is " + dtype + ", not F32");
        }
        return floats;
    }

    /** The int64 values (the live array, not a copy). */
    public long[] longs() {
        if (longs == null) {
            throw new IllegalStateException("tensor is " + dtype + ", not I64");
        }
        return longs;
    }

    public Tensor copy() {
        return floats != null ? of(floats.clone(), shape) : ofLongs(longs.clone(), shape);
    }

    public boolean sameShape(int[] other) {
        return Arrays.equals(shape, other);
    }

    @Override
    public String toString() {
        return "Tensor(" + dtype + ", " + Arrays.toString(shape) + ")";
    }
}
