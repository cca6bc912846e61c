package org.fedpa.core;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.Charset;

/**
 * Installs a model version from the server: every file the manifest lists is downloaded into
 * {@code bundle.incoming}, checked against its sha256, the whole bundle is opened as the app will
 * open it and its golden vectors are replayed on the pure-Java engine; only then is it swapped in.
 * Before any file is fetched the manifest's exact bytes must carry the pinned publisher key's
 * signature, its model version must not be older than the installed one, and its privacy settings
 * must clear the device's policy. Any failure leaves the current bundle (and the user's adapters) untouched.
 */
final class BundleInstaller {
    private BundleInstaller() {
    }

    /** Into a fresh folder, every file verified, then swapped in: the old bundle stays until then. */
    static Manifest install(ApiClient api, String modelId, LocalStore store, FedPAClient.Progress progress,
                            java.security.PublicKey trusted, DevicePolicy policy) throws FedPAException {
        byte[] manifestBytes = api.manifestBytes(modelId);
        byte[] signature = api.signature(modelId);
        if (trusted != null) {
            Signatures.verify(manifestBytes, signature, trusted);
        }
        Manifest remote = Manifest.parse(new String(manifestBytes, Charset.forName("UTF-8")));
        if (!remote.modelId.equals(modelId)) {
            throw new BundleException("asked for model '" + modelId + "', the server's manifest is '" + remote.modelId + "'");
        }
        int installed = installedVersion(store, modelId);
        if (remote.modelVersion < installed) {
            throw new BundleException("model '" + modelId + "' version " + remote.modelVersion + " is older than the "
                    + "installed version " + installed + "; refusing the downgrade");
        }
        if (policy != null) {
            policy.apply(remote.privacy); // PrivacyPolicyException: below this device's floor
        }
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
        if (signature != null) {
            writeFile(new File(incoming, Signatures.FILE), signature);
        }
        writeFile(new File(incoming, Bundle.MANIFEST), manifestBytes);
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
        return remote;
    }

    /** The installed bundle's model version if it is this model, else 0. */
    static int installedVersion(LocalStore store, String modelId) {
        File mf = new File(store.bundleDir(), Bundle.MANIFEST);
        if (!mf.isFile()) {
            return 0;
        }
        try {
            Manifest m = Manifest.parse(new String(Bundle.readFile(mf), Charset.forName("UTF-8")));
            return m.modelId.equals(modelId) ? m.modelVersion : 0;
        } catch (java.io.IOException e) {
            return 0;
        } catch (BundleException e) {
            return 0;
        }
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
