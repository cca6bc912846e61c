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
import org.fedpa.core.Catalog;
import org.fedpa.core.FedPAClient;
import org.fedpa.core.FedPAException;
import org.fedpa.core.LocalStore;
import org.fedpa.core.ServerPolicy;
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
