package org.fedpa.core;

/**
 * Counter-based uniform numbers, bit for bit as Python's {@code fedpa.counter_rng.counter_uniform}: the
 * golden vectors' perturbation ({@link Golden#perturbation}) and the initial bank's drawn tensors
 * ({@link SharedState#initialBank}) are this formula of a seed and a stream index, so a bundle ships
 * neither.
 */
public final class CounterRng {
    private CounterRng() {
    }

    /** Wellons' "lowbias32" integer hash (32-bit wrap-around arithmetic, unsigned shifts). */
    static int mix32(int v) {
        v ^= v >>> 16;
        v *= 0x7FEB352D;
        v ^= v >>> 15;
        v *= 0x846CA68B;
        v ^= v >>> 16;
        return v;
    }

    /**
     * {@code n} floats in [-1, 1) for stream {@code index} of {@code seed} (an unsigned 32-bit value
     * held in an int): element i is {@code ((h >>> 8) - 2^23) * 2^-23} with
     * {@code h = mix32(mix32(seed + 0x9E3779B9 * (index + 1)) + i)}, exact in float32.
     */
    public static float[] uniform(int seed, int index, int n) {
        int base = mix32(seed + 0x9E3779B9 * (index + 1));
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            int h = mix32(base + i);
            out[i] = ((h >>> 8) - (1 << 23)) * 0x1p-23f;
        }
        return out;
    }
}
