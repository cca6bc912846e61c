package org.pytorch.executorch;

/** Stub of {@code EValue.kt} @ executorch v1.4.1 (see ../../../README.md): {@code class EValue} (EValue.kt:36, final). */
public final class EValue {
    private EValue() {
    }

    /** EValue.kt:158-160, companion {@code @JvmStatic fun from(tensor: Tensor): EValue}. */
    public static EValue from(Tensor tensor) {
        throw new UnsupportedOperationException("ExecuTorch API stub");
    }

    /** EValue.kt:68, {@code fun toTensor(): Tensor}. */
    public Tensor toTensor() {
        throw new UnsupportedOperationException("ExecuTorch API stub");
    }
}
