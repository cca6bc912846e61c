package org.fedpa.demo;

import android.content.Context;
import android.content.pm.ApplicationInfo;
import android.os.Handler;
import android.os.Looper;
import java.io.File;
import java.security.SecureRandom;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.fedpa.core.BundleException;
import org.fedpa.core.Catalog;
import org.fedpa.core.FedPAClient;
import org.fedpa.core.FedPAException;
import org.fedpa.core.LocalStore;
import org.fedpa.core.ServerPolicy;
import org.fedpa.core.Signatures;
import org.fedpa.core.SyncException;
import org.fedpa.core.TrainingConfig;
import org.fedpa.core.VerifiedRuntimeFactory;

/**
 * The process's one FedPA client and the single background thread every call runs on (network,
 * disk and training never touch the UI thread); results come back on the main looper.
 */
final class AppState {
    // No default server: the user enters the aggregator's https:// URL in Settings (plain HTTP only
    // to this device / the emulator's host computer, with the debug setting; ServerPolicy).
    static final String DEFAULT_SERVER = "";
    static final String DEFAULT_MODEL = "fedpa";
    private static final String PREFS = "fedpa.app";
    private static final String PREF_PLAIN_HTTP = "debug_allow_plain_http";
    private static final String PREF_PUBLISHER_KEY = "publisher_key_pem";
    private static final String PREF_ALLOW_UNSIGNED = "debug_allow_unsigned_bundles";
    static final int CATALOG_SIZE = 300;
    static final int FEED_SIZE = 20;

    private static AppState instance;

    final FedPAClient client;
    private final VerifiedRuntimeFactory verified; // null: this build has only the pure-Java engine
    private final String runtimeProblem; // why ExecuTorch could not even be set up, or null
    private final Context context;
    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final Handler main = new Handler(Looper.getMainLooper());
    private final File storeDir;
    private List<Catalog.Item> catalog;

    /** Work for the background thread. */
    interface Task<T> {
        T call() throws Exception;
    }

    /** Its outcome, on the UI thread: a value, or a message fit to show the user. */
    interface Callback<T> {
        void done(T value);

        void failed(String message);
    }

    private AppState(Context context) throws FedPAException {
        this.context = context;
        storeDir = new File(context.getFilesDir(), "fedpa");
        client = new FedPAClient(new LocalStore(storeDir), new SecureRandom(), TrainingConfig.defaults(), 15000);
        if (client.state().serverUrl.isEmpty()) {
            client.configure(DEFAULT_SERVER, DEFAULT_MODEL);
        }
        VerifiedRuntimeFactory v = null;
        String problem = null;
        try {
            v = executorch();
        } catch (Exception e) {
            problem = "ExecuTorch unavailable (" + e + "); ranking and training with the pure-Java engine instead";
        } catch (LinkageError e) { // a class of the AAR missing or broken
            problem = "ExecuTorch unavailable (" + e + "); ranking and training with the pure-Java engine instead";
        }
        verified = v;
        runtimeProblem = problem;
        if (verified != null) {
            client.setRuntimeFactory(verified);
        }
    }

    static synchronized AppState get(Context context) throws FedPAException {
        if (instance == null) {
            instance = new AppState(context.getApplicationContext());
        }
        return instance;
    }

    /** Move the local data aside (kept, never deleted) and start over. */
    static synchronized String reset(Context context) {
        File dir = new File(context.getApplicationContext().getFilesDir(), "fedpa");
        File aside = new File(dir.getParentFile(), "fedpa.reset-" + System.currentTimeMillis());
        instance = null;
        return dir.renameTo(aside) ? "local data moved to " + aside.getName() : "nothing to reset";
    }

    /**
     * The Gradle build adds an ExecuTorch runtime (src/executorch); the Debian-built APK has only
     * the pure-Java engine (null here). ExecuTorch is used for a bundle only once
     * {@link VerifiedRuntimeFactory} has checked its version, loaded it and replayed the bundle's
     * golden vectors through it; otherwise the pure-Java engine runs, with a notice.
     */
    private static VerifiedRuntimeFactory executorch() throws Exception {
        Class<?> cls;
        try {
            cls = Class.forName("org.fedpa.demo.executorch.ExecuTorchRuntimeFactory");
        } catch (ClassNotFoundException e) {
            return null;
        }
        return new VerifiedRuntimeFactory((VerifiedRuntimeFactory.Candidate) cls.newInstance());
    }

    /** The engine in use, for the header ("ExecuTorch", "pure Java"; chosen when a model is opened). */
    String runtimeName() {
        if (verified == null) {
            return "pure Java";
        }
        String chosen = verified.chosen();
        return chosen != null ? chosen : "ExecuTorch if it passes the model's checks (no model yet)";
    }

    /** Why this phone does not run the bundle with ExecuTorch though the app has it; null if it does or cannot. */
    String runtimeNotice() {
        return runtimeProblem != null ? runtimeProblem : verified == null ? null : verified.notice();
    }

    /** Debug builds only: the user's switch for plain HTTP to this device / the emulator's host. */
    boolean debuggable() {
        return (context.getApplicationInfo().flags & ApplicationInfo.FLAG_DEBUGGABLE) != 0;
    }

    boolean allowPlainHttp() {
        return debuggable() && context.getSharedPreferences(PREFS, Context.MODE_PRIVATE).getBoolean(PREF_PLAIN_HTTP, false);
    }

    void setAllowPlainHttp(boolean on) {
        context.getSharedPreferences(PREFS, Context.MODE_PRIVATE).edit().putBoolean(PREF_PLAIN_HTTP, on && debuggable()).apply();
    }

    /** Before any network call: the configured URL must pass {@link ServerPolicy} with the current setting. */
    void checkServer() throws SyncException {
        ServerPolicy.check(client.state().serverUrl, allowPlainHttp());
    }

    /** The pinned publisher key (PEM text of {@code publisher.pub}), or "" if none. */
    String publisherKey() {
        return context.getSharedPreferences(PREFS, Context.MODE_PRIVATE).getString(PREF_PUBLISHER_KEY, "");
    }

    /**
     * Pin {@code pem} ("" unpins): checked to be an ECDSA P-256 public key first, so a bad paste
     * is refused with the reason and the stored key stays as it was.
     */
    void setPublisherKey(String pem) throws BundleException {
        String text = pem.trim();
        if (!text.isEmpty()) {
            Signatures.publicKey(text);
        }
        context.getSharedPreferences(PREFS, Context.MODE_PRIVATE).edit().putString(PREF_PUBLISHER_KEY, text).apply();
    }

    /** The pinned key's id (sha256 of its DER encoding, as {@code manifest.sig} names it), or null. */
    String publisherKeyId() {
        String pem = publisherKey();
        if (pem.isEmpty()) {
            return null;
        }
        try {
            return Signatures.keyId(Signatures.publicKey(pem));
        } catch (BundleException e) {
            return null;
        }
    }

    /** Debug builds only: install unsigned bundles while no key is pinned (a development server). */
    boolean allowUnsigned() {
        return debuggable() && context.getSharedPreferences(PREFS, Context.MODE_PRIVATE).getBoolean(PREF_ALLOW_UNSIGNED, false);
    }

    void setAllowUnsigned(boolean on) {
        context.getSharedPreferences(PREFS, Context.MODE_PRIVATE).edit().putBoolean(PREF_ALLOW_UNSIGNED, on && debuggable()).apply();
    }

    /**
     * Before any sync: hand the settings' key (or the debug switch) to the client. Without either,
     * refuse here, before the phone contacts the server.
     */
    void applyTrust() throws BundleException {
        String pem = publisherKey();
        boolean unsigned = allowUnsigned();
        if (pem.isEmpty() && !unsigned) {
            throw new BundleException(NO_KEY);
        }
        client.setPublisherKey(pem.isEmpty() ? null : pem);
        client.setAllowUnsigned(pem.isEmpty() && unsigned);
    }

    static final String NO_KEY = "no publisher key pinned: paste the publisher's public key (publisher.pub, from "
            + "fedpa-export keygen) in Settings before syncing; without it no model can be checked or installed";

    synchronized List<Catalog.Item> catalog() throws FedPAException {
        if (catalog == null) {
            catalog = Catalog.synthetic(client.model().manifest(), CATALOG_SIZE, 2024);
        }
        return catalog;
    }

    <T> void run(final Task<T> task, final Callback<T> callback) {
        worker.execute(new Runnable() {
            @Override
            public void run() {
                try {
                    final T value = task.call();
                    main.post(new Runnable() {
                        @Override
                        public void run() {
                            callback.done(value);
                        }
                    });
                } catch (final Exception e) {
                    main.post(new Runnable() {
                        @Override
                        public void run() {
                            callback.failed(Messages.describe(e));
                        }
                    });
                }
            }
        });
    }

    void post(Runnable r) {
        main.post(r);
    }
}
