package org.fedpa.core;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.Charset;

/**
 * Installs a model version from the server: every file the manifest lists is downloaded into
 * {@code bundle.incoming}, checked against its sha256, the whole bundle is opened as the app will
 * open it and its golden vectors are replayed on the pure-Java engine; only then is it swapped in.
 * Any failure leaves the current bundle (and the user's adapters) untouched.
 */
final class BundleInstaller {
    private BundleInstaller() {
    }

    /** Into a fresh folder, every file verified, then swapped in: the old bundle stays until then. */
    static void install(ApiClient api, String modelId, Manifest remote, LocalStore store, FedPAClient.Progress progress)
            throws FedPAException {
        File incoming = new File(store.dir(), "bundle.incoming");
        deleteTree(incoming);
        if (!incoming.mkdirs()) {
            throw new StoreException("cannot create " + incoming);
        }
        int i = 0;
        for (String name : remote.fileSha256.keySet()) {
            progress.update("downloading " + name, 0.05 + 0.2 * i++ / remote.fileSha256.size());
            if (name.contains("/") || name.contains("\\") || name.startsWith(".")) {
                throw new BundleException("manifest lists an unsafe file name '" + name + "'");
            }
            byte[] data = api.file(modelId, name);
            String sha = Bundle.sha256(data);
            if (!sha.equals(remote.fileSha256.get(name))) {
                deleteTree(incoming);
                throw new BundleException("server sent " + name + " with sha256 " + sha + " but the manifest says "
                        + remote.fileSha256.get(name) + " (corrupt or tampered); the current model is kept");
            }
            writeFile(new File(incoming, name), data);
        }
        writeFile(new File(incoming, Bundle.MANIFEST), remote.json.getBytes(Charset.forName("UTF-8")));
        Bundle fresh = Bundle.open(incoming); // the whole bundle, as the app will open it
        if (fresh.manifest().fileSha256.containsKey("golden.json")) {
            progress.update("checking the engine against the golden vectors", 0.27);
            for (Golden.Check c : Golden.replay(new Model(fresh))) {
                if (!c.ok) {
                    deleteTree(incoming);
                    throw new BundleException("this app's engine disagrees with the new model's golden vectors (" + c
                            + "); the current model is kept");
                }
            }
        }
        File old = new File(store.dir(), "bundle.old");
        deleteTree(old);
        if (store.bundleDir().exists() && !store.bundleDir().renameTo(old)) {
            throw new StoreException("cannot move the old bundle aside");
        }
        if (!incoming.renameTo(store.bundleDir())) {
            throw new StoreException("cannot install the new bundle");
        }
        deleteTree(old);
    }

    private static void writeFile(File f, byte[] data) throws StoreException {
        try {
            FileOutputStream out = new FileOutputStream(f);
            try {
                out.write(data);
                out.getFD().sync();
            } finally {
                out.close();
            }
        } catch (IOException e) {
            throw new StoreException("cannot write " + f + ": " + e.getMessage(), e);
        }
    }

    /** Remove a folder and everything in it. */
    static void deleteTree(File f) {
        File[] children = f.listFiles();
        if (children != null) {
            for (File c : children) {
                deleteTree(c);
            }
        }
        f.delete();
    }
}
