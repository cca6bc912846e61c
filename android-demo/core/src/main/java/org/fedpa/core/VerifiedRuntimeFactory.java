package org.fedpa.core;

import java.io.Closeable;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.json.JSONObject;

/**
 * Chooses what a phone ranks and trains with, each time a bundle is opened (right after it is
 * installed, and at every app start): the preferred runtime (ExecuTorch in the Gradle app) only if
 * its version matches the toolchain that wrote the bundle's programs, it loads (its native library
 * exists for this phone's ABI), and it reproduces the bundle's golden vectors; otherwise the
 * pure-Java engine, which {@link BundleInstaller} has already checked against the same vectors.
 * A fallback is never silent: {@link #notice()} says why, for the app to show.
 */
public final class VerifiedRuntimeFactory implements ModelRuntime.Factory {
    /** A runtime the app prefers over the pure-Java engine once it is verified. */
    public interface Candidate extends ModelRuntime.Factory {
        /** For the user: "ExecuTorch". */
        String runtimeName();

        /** The {@code manifest.json} → {@code toolchain} entry naming the version that wrote its programs. */
        String toolchainKey();

        /** The version of the runtime library linked into this app, e.g. "1.4.1". */
        String version();
    }

    private static final Pattern RELEASE = Pattern.compile("^(\\d+)\\.(\\d+)(?:\\D|$)");

    private final Candidate preferred;
    private volatile String chosen; // null until a bundle is opened
    private volatile String notice;

    public VerifiedRuntimeFactory(Candidate preferred) {
        this.preferred = preferred;
    }

    /** The runtime chosen for the last bundle opened ("ExecuTorch" or "pure Java"); null before any. */
    public String chosen() {
        return chosen;
    }

    /** Why the preferred runtime is not used for the last bundle opened; null when it is. */
    public String notice() {
        return notice;
    }

    @Override
    public ModelRuntime create(Bundle bundle, Engine engine, Trainer trainer) throws FedPAException {
        String problem = problemBeforeLoading(bundle);
        if (problem == null) {
            ModelRuntime runtime = null;
            try {
                runtime = preferred.create(bundle, engine, trainer);
                Golden.Check bad = firstFailure(Golden.replay(bundle, runtime, engine.itemVectors()));
                if (bad == null) {
                    chosen = preferred.runtimeName();
                    notice = null;
                    return runtime;
                }
                problem = preferred.runtimeName() + " disagrees with the model's golden vectors (" + bad + ")";
            } catch (LinkageError e) { // UnsatisfiedLinkError, NoClassDefFoundError: no native library for this ABI
                problem = preferred.runtimeName() + "'s native library is not available on this phone ("
                        + e.getClass().getSimpleName() + ": " + e.getMessage() + ")";
            } catch (FedPAException e) {
                problem = preferred.runtimeName() + " cannot run this model: " + e.getMessage();
            } catch (RuntimeException e) {
                problem = preferred.runtimeName() + " failed on this model: " + e;
            }
            closeQuietly(runtime);
        }
        chosen = "pure Java";
        notice = problem + "; ranking and training with the pure-Java engine instead";
        return new JavaRuntime(engine, trainer);
    }

    /** A reason not to try the preferred runtime at all, or null. */
    private String problemBeforeLoading(Bundle bundle) {
        String written = toolchainVersion(bundle.manifest(), preferred.toolchainKey());
        if (!sameRelease(written, preferred.version())) {
            return preferred.runtimeName() + " " + preferred.version() + " in this app does not match the model's programs ("
                    + (written == null ? "the manifest names no " + preferred.toolchainKey() + " version"
                    : "written by " + preferred.toolchainKey() + " " + written) + ")";
        }
        if (!bundle.manifest().fileSha256.containsKey("golden.json")) {
            return "the model has no golden vectors to check " + preferred.runtimeName() + " against";
        }
        return null;
    }

    /** {@code toolchain[key]} of the manifest, or null. */
    static String toolchainVersion(Manifest m, String key) {
        try {
            JSONObject toolchain = new JSONObject(m.json).optJSONObject("toolchain");
            String v = toolchain == null ? null : toolchain.optString(key, null);
            return v == null || v.isEmpty() ? null : v;
        } catch (org.json.JSONException e) {
            return null;
        }
    }

    /**
     * Same major.minor release ("1.4.1" and "1.4.0+cpu" match, "1.3.0" does not): the demo's rule
     * for running a program with a runtime; the golden vectors then check the rest.
     */
    static boolean sameRelease(String a, String b) {
        if (a == null || b == null) {
            return false;
        }
        Matcher ma = RELEASE.matcher(a.trim());
        Matcher mb = RELEASE.matcher(b.trim());
        return ma.find() && mb.find() && ma.group(1).equals(mb.group(1)) && ma.group(2).equals(mb.group(2));
    }

    private static Golden.Check firstFailure(List<Golden.Check> checks) {
        for (Golden.Check c : checks) {
            if (!c.ok) {
                return c;
            }
        }
        return null;
    }

    private static void closeQuietly(ModelRuntime runtime) {
        if (runtime instanceof Closeable) {
            try {
                ((Closeable) runtime).close();
            } catch (Exception e) {
                // nothing to recover: the runtime is dropped either way
            } catch (LinkageError e) {
                // as above
            }
        }
    }
}
