package org.pytorch.executorch;

import java.nio.Buffer;

/**
 * Stub of {@code Tensor.kt} @ executorch v1.4.1 (see ../../../README.md): {@code abstract class
 * Tensor internal constructor(shape: LongArray)} (Tensor.kt:44).
 */
public abstract class Tensor {
    Tensor() {
    }

    /** Tensor.kt:527-528, companion {@code @JvmStatic fun fromBlob(data: FloatArray, shape: LongArray): Tensor}. */
    public static Tensor fromBlob(float[] data, long[] shape) {
        throw new UnsupportedOperationException("ExecuTorch API stub");
    }

    /** Tensor.kt:545-546, companion {@code @JvmStatic fun fromBlob(data: LongArray, shape: LongArray): Tensor}. */
    public static Tensor fromBlob(long[] data, long[] shape) {
        throw new UnsupportedOperationException("ExecuTorch API stub");
    }

    /** Tensor.kt:91, {@code open val dataAsFloatArray: FloatArray} (its getter). */
    public float[] getDataAsFloatArray() {
        throw new UnsupportedOperationException("ExecuTorch API stub");
    }

    /**
     * Tensor.kt:158-159, {@code @DoNotStrip open fun getRawDataBuffer(): Buffer} — public; a
     * float32 tensor returns its FloatBuffer (Tensor.kt:300), for tensors from
     * {@code namedParameters} a view of the program's memory.
     */
    public Buffer getRawDataBuffer() {
        throw new UnsupportedOperationException("ExecuTorch API stub");
    }
}
