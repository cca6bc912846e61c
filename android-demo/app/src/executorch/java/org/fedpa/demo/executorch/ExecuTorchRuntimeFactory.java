package org.fedpa.demo.executorch;

import org.fedpa.core.Bundle;
import org.fedpa.core.Engine;
import org.fedpa.core.FedPAException;
import org.fedpa.core.ModelRuntime;
import org.fedpa.core.Trainer;

/** Found by reflection from AppState when the Gradle build includes this source set. */
public final class ExecuTorchRuntimeFactory implements ModelRuntime.Factory {
    @Override
    public ModelRuntime create(Bundle bundle, Engine engine, Trainer trainer) throws FedPAException {
        return new ExecuTorchRuntime(bundle);
    }
}
