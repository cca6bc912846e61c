package org.fedpa.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Map;

/**
 * An export bundle on disk (docs/design.md §6): {@code manifest.json} plus the files it lists, every one
 * checked for size and sha256 when opened. Gives the pure-Java engine everything it needs: the
 * architecture, the frozen weights ({@code backbone.safetensors}), the initial shared state and
 * the initial private tensors.
 */
public final class Bundle {
    public static final String MANIFEST = "manifest.json";
    public static final String SHARED_STATE = "shared_state.safetensors";
    public static final String PRIVATE_INIT = "private_init.safetensors";
    public static final String BACKBONE = "backbone.safetensors";

    private final File dir;
    private final Manifest manifest;

    private Bundle(File dir, Manifest manifest) {
        this.dir = dir;
        this.manifest = manifest;
    }

    /** Open and verify; a missing, resized or tampered file is a BundleException naming it. */
    public static Bundle open(File dir) throws BundleException {
        File mf = new File(dir, MANIFEST);
        if (!mf.isFile()) {
            throw new BundleException(mf + ": no manifest.json (not a FedPA bundle)");
        }
        Manifest manifest;
        try {
            manifest = Manifest.parse(new String(readFile(mf), "UTF-8"));
        } catch (IOException e) {
            throw new BundleException(mf + ": cannot read (" + e.getMessage() + ")", e);
        }
        for (Map.Entry<String, String> e : manifest.fileSha256.entrySet()) {
            verifyFile(new File(dir, e.getKey()), e.getValue(), manifest.fileSize.get(e.getKey()));
        }
        return new Bundle(dir, manifest);
    }

    /** Check one file against its manifest entry. */
    public static void verifyFile(File file, String sha256, Long size) throws BundleException {
        if (!file.isFile()) {
            throw new BundleException(file + ": listed in the manifest but missing");
        }
        if (size != null && file.length() != size) {
            throw new BundleException(file + ": size " + file.length() + " != manifest's " + size);
        }
        String actual;
        try {
            actual = sha256(file);
        } catch (IOException e) {
            throw new BundleException(file + ": cannot read (" + e.getMessage() + ")", e);
        }
        if (!actual.equals(sha256)) {
            throw new BundleException(file + ": sha256 " + actual + " != manifest's " + sha256
                    + " (corrupt or tampered)");
        }
    }

    public Manifest manifest() {
        return manifest;
    }

    public File dir() {
        return dir;
    }

    public File file(String name) {
        return new File(dir, name);
    }

    /**
     * The frozen backbone and head from {@code backbone.safetensors} (read once per call; {@link Model}
     * keeps them): a missing, corrupt or mismatched file is a BundleException naming it.
     */
    public FrozenWeights frozenWeights() throws BundleException {
        if (!manifest.fileSha256.containsKey(BACKBONE)) {
            throw new BundleException(file(BACKBONE) + ": the manifest does not list it (a bundle from before the "
                    + "backbone became a program input; rebuild it)");
        }
        return FrozenWeights.fromBackbone(safetensors(BACKBONE).tensors(), manifest, file(BACKBONE).toString());
    }

    /**
     * The initial shared bank (all group values), by wire name: {@code shared_state.safetensors} holds only
     * the tensors that are not drawn; the rest follow from the manifest's seed ({@link SharedState#initialBank}).
     */
    public Map<String, Tensor> sharedState() throws BundleException {
        try {
            return SharedState.initialBank(manifest.sharedTensors, manifest.initialBank, safetensors(SHARED_STATE).tensors());
        } catch (PayloadException e) {
            throw new BundleException(file(SHARED_STATE) + ": " + e.getMessage(), e);
        }
    }

    /** The initial private tensors, by parameter name. */
    public Map<String, Tensor> privateInit() throws BundleException {
        return safetensors(PRIVATE_INIT).tensors();
    }

    public SafeTensors safetensors(String name) throws BundleException {
        try {
            return SafeTensors.decode(readFile(file(name)));
        } catch (IOException e) {
            throw new BundleException(file(name) + ": cannot read (" + e.getMessage() + ")", e);
        } catch (PayloadException e) {
            throw new BundleException(file(name) + ": " + e.getMessage(), e);
        }
    }

    public static String sha256(File file) throws IOException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        InputStream in = new FileInputStream(file);
        try {
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) > 0) {
                md.update(buf, 0, n);
            }
        } finally {
            in.close();
        }
        return hex(md.digest());
    }

    public static String sha256(byte[] data) {
        try {
            return hex(MessageDigest.getInstance("SHA-256").digest(data));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    static String hex(byte[] bytes) {
        StringBuilder sb = new StringBuilder(bytes.length * 2);
        for (byte b : bytes) {
            sb.append(Character.forDigit((b >> 4) & 0xf, 16)).append(Character.forDigit(b & 0xf, 16));
        }
        return sb.toString();
    }

    public static byte[] readFile(File f) throws IOException {
        InputStream in = new FileInputStream(f);
        try {
            return readAll(in);
        } finally {
            in.close();
        }
    }

    static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[1 << 16];
        int n;
        while ((n = in.read(buf)) > 0) {
            out.write(buf, 0, n);
        }
        return out.toByteArray();
    }
}
