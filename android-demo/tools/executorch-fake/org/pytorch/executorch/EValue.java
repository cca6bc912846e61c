package org.pytorch.executorch;

/** Fake of ExecuTorch's EValue (tensors only). */
public final class EValue {
    private final Tensor tensor;

    private EValue(Tensor tensor) {
        this.tensor = tensor;
    }

    public static EValue from(Tensor tensor) {
        return new EValue(tensor);
    }

    public Tensor toTensor() {
        return tensor;
    }
}
