package org.pytorch.executorch;

import java.io.Closeable;

/**
 * Stub of {@code Module.kt} @ executorch v1.4.1 (see ../../../README.md): {@code open class Module
 * private constructor(...) : Closeable} (Module.kt:25).
 */
public class Module implements Closeable {
    private Module() {
    }

    /**
     * Module.kt:251-253, companion {@code @JvmStatic @JvmOverloads fun load(modelPath: String?,
     * loadMode: Int = LOAD_MODE_FILE, numThreads: Int = 0): Module} (the one-argument overload).
     */
    public static Module load(String modelPath) {
        throw new UnsatisfiedLinkError("ExecuTorch API stub: no libexecutorch.so (NativeLoader.loadLibrary(\"executorch\"))");
    }

    /** Module.kt:57, {@code open fun forward(vararg inputs: EValue): Array<EValue>}. */
    public EValue[] forward(EValue... inputs) {
        throw new UnsupportedOperationException("ExecuTorch API stub");
    }

    /** Module.kt:218, {@code override fun close()} (Closeable). */
    @Override
    public void close() {
        throw new UnsupportedOperationException("ExecuTorch API stub");
    }
}
