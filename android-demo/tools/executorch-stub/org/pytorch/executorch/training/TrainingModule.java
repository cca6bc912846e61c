package org.pytorch.executorch.training;

import java.io.Closeable;
import java.util.Map;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Tensor;

/**
 * Stub of {@code training/TrainingModule.kt} @ executorch v1.4.1 (see ../../../../README.md):
 * {@code class TrainingModule private constructor(...) : Closeable} (TrainingModule.kt:28, final).
 */
public final class TrainingModule implements Closeable {
    private TrainingModule() {
    }

    /** TrainingModule.kt:138-139, companion {@code @JvmStatic fun load(modelPath: String): TrainingModule}. */
    public static TrainingModule load(String modelPath) {
        throw new UnsatisfiedLinkError("ExecuTorch API stub: no libexecutorch.so (NativeLoader.loadLibrary(\"executorch\"))");
    }

    /** TrainingModule.kt:47, {@code fun executeForwardBackward(methodName: String, vararg inputs: EValue): Array<EValue>}. */
    public EValue[] executeForwardBackward(String methodName, EValue... inputs) {
        throw new UnsupportedOperationException("ExecuTorch API stub");
    }

    /** TrainingModule.kt:63, {@code fun namedParameters(methodName: String): Map<String, Tensor>}. */
    public Map<String, Tensor> namedParameters(String methodName) {
        throw new UnsupportedOperationException("ExecuTorch API stub");
    }

    /** TrainingModule.kt:75, {@code fun namedGradients(methodName: String): Map<String, Tensor>}. */
    public Map<String, Tensor> namedGradients(String methodName) {
        throw new UnsupportedOperationException("ExecuTorch API stub");
    }

    /** TrainingModule.kt:87, {@code override fun close()} (Closeable). */
    @Override
    public void close() {
        throw new UnsupportedOperationException("ExecuTorch API stub");
    }
}
