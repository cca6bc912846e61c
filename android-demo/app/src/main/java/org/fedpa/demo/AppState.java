package org.fedpa.demo;

import android.content.Context;
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
import org.fedpa.core.ModelRuntime;
import org.fedpa.core.TrainingConfig;

/**
 * The process's one FedPA client and the single background thread every call runs on (network,
 * disk and training never touch the UI thread); results come back on the main looper.
 */
final class AppState {
    static final String DEFAULT_SERVER = "http://10.0.2.2:8000"; // the host machine, seen from the emulator
    static final String DEFAULT_MODEL = "fedpa";
    static final int CATALOG_SIZE = 300;
    static final int FEED_SIZE = 20;

    private static AppState instance;

    final FedPAClient client;
    final String runtimeName;
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
        storeDir = new File(context.getFilesDir(), "fedpa");
        client = new FedPAClient(new LocalStore(storeDir), new SecureRandom(), TrainingConfig.defaults(), 15000);
        if (client.state().serverUrl.isEmpty()) {
            client.configure(DEFAULT_SERVER, DEFAULT_MODEL);
        }
        runtimeName = installRuntime(client);
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
     * the pure-Java engine. Either way the golden vectors were checked with the pure-Java engine.
     */
    private static String installRuntime(FedPAClient client) {
        try {
            Class<?> cls = Class.forName("org.fedpa.demo.executorch.ExecuTorchRuntimeFactory");
            client.setRuntimeFactory((ModelRuntime.Factory) cls.newInstance());
            return "ExecuTorch";
        } catch (ClassNotFoundException e) {
            return "pure Java";
        } catch (Exception e) {
            return "pure Java (ExecuTorch unavailable: " + e.getMessage() + ")";
        } catch (LinkageError e) { // native library missing for this ABI
            return "pure Java (ExecuTorch unavailable: " + e.getMessage() + ")";
        }
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
