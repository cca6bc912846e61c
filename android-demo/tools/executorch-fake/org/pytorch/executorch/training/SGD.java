package org.pytorch.executorch.training;

import java.nio.FloatBuffer;
import java.util.Map;
import org.pytorch.executorch.Tensor;

/** Fake of ExecuTorch's plain SGD: p ← p − lr·g in float32, in the parameters' buffers. */
public final class SGD {
    private final Map<String, ? extends Tensor> parameters;
    private final float lr;

    private SGD(Map<String, ? extends Tensor> parameters, double lr) {
        this.parameters = parameters;
        this.lr = (float) lr;
    }

    public static SGD create(Map<String, ? extends Tensor> namedParameters, double learningRate) {
        return new SGD(namedParameters, learningRate);
    }

    public void step(Map<String, ? extends Tensor> namedGradients) {
        for (Map.Entry<String, ? extends Tensor> e : parameters.entrySet()) {
            FloatBuffer p = TrainingModule.buffer(e.getValue());
            float[] g = namedGradients.get(e.getKey()).getDataAsFloatArray();
            for (int i = 0; i < g.length; i++) {
                p.put(i, p.get(i) - lr * g[i]);
            }
        }
    }
}
