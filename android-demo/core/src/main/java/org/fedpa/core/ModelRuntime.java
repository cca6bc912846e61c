package org.fedpa.core;

import java.util.Map;

/**
 * What runs the student: {@link JavaRuntime} (pure Java, always available) or, in the Gradle
 * app, ExecuTorch's Module/TrainingModule over the bundle's {@code .pte} programs. Both take the
 * personalisation tensors by parameter name.
 */
public interface ModelRuntime {
    /** Logits of n rows of feature codes ({@code x} is [n, F] row-major). */
    float[] score(long[] x, int n, Map<String, Tensor> params) throws FedPAException;

    /**
     * One SGD step of the mean BCE loss on all tensors of {@code params}, in place; the loss before
     * it. When the loss or any gradient is not finite the step is skipped: {@code params} are left
     * unchanged and the result is {@link Float#NaN} (every runtime must keep this contract).
     */
    float step(long[] x, float[] y, int n, Map<String, Tensor> params, float lr) throws FedPAException;

    /** A short name for the UI ("pure Java", "ExecuTorch"). */
    String name();

    /** Makes a runtime for an opened bundle. */
    interface Factory {
        ModelRuntime create(Bundle bundle, Engine engine, Trainer trainer) throws FedPAException;
    }
}
