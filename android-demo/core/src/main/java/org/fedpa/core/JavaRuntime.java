package org.fedpa.core;

import java.util.ArrayList;
import java.util.Map;

/** The pure-Java {@link Engine} + {@link Trainer} behind the {@link ModelRuntime} interface. */
public final class JavaRuntime implements ModelRuntime {
    public static final Factory FACTORY = new Factory() {
        @Override
        public ModelRuntime create(Bundle bundle, Engine engine, Trainer trainer) {
            return new JavaRuntime(engine, trainer);
        }
    };

    private final Engine engine;
    private final Trainer trainer;

    public JavaRuntime(Engine engine, Trainer trainer) {
        this.engine = engine;
        this.trainer = trainer;
    }

    @Override
    public float[] score(long[] x, int n, Map<String, Tensor> params) {
        return engine.score(x, n, params);
    }

    @Override
    public float step(long[] x, float[] y, int n, Map<String, Tensor> params, float lr) {
        return trainer.step(x, y, n, params, new ArrayList<String>(params.keySet()), lr);
    }

    @Override
    public String name() {
        return "pure Java";
    }
}
