package org.fedpa.demo.executorch;

import org.fedpa.core.Bundle;
import org.fedpa.core.Engine;
import org.fedpa.core.FedPAException;
import org.fedpa.core.ModelRuntime;
import org.fedpa.core.Trainer;
import org.fedpa.core.VerifiedRuntimeFactory;
import org.fedpa.demo.BuildConfig;

/**
 * Found by reflection from AppState when the Gradle build includes this source set; AppState
 * wraps it in a {@link VerifiedRuntimeFactory}, so the runtime is used only when its version
 * matches the bundle's toolchain, its native library loads, and it reproduces the golden vectors.
 */
public final class ExecuTorchRuntimeFactory implements VerifiedRuntimeFactory.Candidate {
    @Override
    public ModelRuntime create(Bundle bundle, Engine engine, Trainer trainer) throws FedPAException {
        return new ExecuTorchRuntime(bundle, engine.frozen());
    }

    @Override
    public String runtimeName() {
        return "ExecuTorch";
    }

    @Override
    public String toolchainKey() {
        return "executorch";
    }

    /** org.pytorch:executorch-android's version, from gradle.properties (app/build.gradle.kts → BuildConfig). */
    @Override
    public String version() {
        return BuildConfig.EXECUTORCH_VERSION;
    }
}
