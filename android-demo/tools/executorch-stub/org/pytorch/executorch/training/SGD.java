package org.pytorch.executorch.training;

import java.util.Map;
import org.pytorch.executorch.Tensor;

/** Stub of {@code training/SGD.kt} @ executorch v1.4.1 (see ../../../../README.md): {@code class SGD private constructor(...)} (SGD.kt:24, final). */
public final class SGD {
    private SGD() {
    }

    /**
     * SGD.kt:96-97, companion {@code @JvmStatic fun create(namedParameters: Map<String, Tensor>,
     * learningRate: Double): SGD} — Kotlin's {@code Map<K, out V>} with an open {@code Tensor}
     * becomes {@code Map<String, ? extends Tensor>} in a Java parameter.
     */
    public static SGD create(Map<String, ? extends Tensor> namedParameters, double learningRate) {
        throw new UnsatisfiedLinkError("ExecuTorch API stub: no libexecutorch.so (NativeLoader.loadLibrary(\"executorch\"))");
    }

    /** SGD.kt:42, {@code fun step(namedGradients: Map<String, Tensor>)}. */
    public void step(Map<String, ? extends Tensor> namedGradients) {
        throw new UnsupportedOperationException("ExecuTorch API stub");
    }
}
