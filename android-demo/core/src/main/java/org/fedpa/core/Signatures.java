package org.fedpa.core;

import java.nio.charset.Charset;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.X509EncodedKeySpec;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * Publisher signatures on bundles ({@code fedpa.signing}): {@code manifest.sig} holds an ECDSA
 * P-256 / SHA-256 signature of {@code manifest.json}'s exact bytes, and the manifest pins every
 * other file's sha256. ECDSA rather than Ed25519 because Android verifies Ed25519 only from API 33
 * and the app runs from API 26; {@code SHA256withECDSA} is there. Base64 is {@link Golden#base64}:
 * build-apk.sh compiles against API 23, which has no {@code java.util.Base64}.
 */
public final class Signatures {
    public static final String ALGORITHM = "ecdsa-p256-sha256";
    public static final String FILE = "manifest.sig";
    private static final Charset UTF8 = Charset.forName("UTF-8");

    private Signatures() {
    }

    /** A publisher key from the PEM text of {@code publisher.pub} (what {@code fedpa-export keygen} writes). */
    public static PublicKey publicKey(String pem) throws BundleException {
        String body = pem.replace("-----BEGIN PUBLIC KEY-----", "").replace("-----END PUBLIC KEY-----", "")
                .replaceAll("\\s", "");
        byte[] der;
        try {
            der = Golden.base64(body);
        } catch (BundleException e) {
            throw new BundleException("publisher key is not a PEM public key: " + e.getMessage(), e);
        }
        try {
            PublicKey key = KeyFactory.getInstance("EC").generatePublic(new X509EncodedKeySpec(der));
            if (!(key instanceof java.security.interfaces.ECPublicKey)
                    || ((java.security.interfaces.ECPublicKey) key).getParams().getCurve().getField().getFieldSize() != 256) {
                throw new BundleException("publisher key must be ECDSA P-256 (fedpa-export keygen writes one)");
            }
            return key;
        } catch (IllegalArgumentException e) {
            throw new BundleException("publisher key is not an EC public key: " + e.getMessage(), e);
        } catch (GeneralSecurityException e) {
            throw new BundleException("publisher key is not an EC public key: " + e.getMessage(), e);
        }
    }

    /** Hex sha256 of the key's DER SubjectPublicKeyInfo: the key id the signature file names. */
    public static String keyId(PublicKey key) {
        try {
            return Bundle.hex(MessageDigest.getInstance("SHA-256").digest(key.getEncoded()));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * Throws unless {@code signatureFile} is {@code trusted}'s signature of {@code manifest}: an
     * unsigned bundle (null), another key's signature, a malformed file or a changed manifest.
     */
    public static void verify(byte[] manifest, byte[] signatureFile, PublicKey trusted) throws BundleException {
        String trustedId = keyId(trusted);
        if (signatureFile == null) {
            throw new BundleException("the bundle is unsigned (no " + FILE + "); this device trusts only bundles "
                    + "signed by key " + trustedId.substring(0, 16));
        }
        String algorithm;
        String keyId;
        byte[] raw;
        try {
            JSONObject o = new JSONObject(new String(signatureFile, UTF8));
            algorithm = o.getString("algorithm");
            keyId = o.getString("key_id");
            raw = Golden.base64(o.getString("signature"));
        } catch (JSONException e) {
            throw new BundleException(FILE + " is malformed: " + e.getMessage(), e);
        } catch (BundleException e) {
            throw new BundleException(FILE + " is malformed: " + e.getMessage(), e);
        }
        if (!ALGORITHM.equals(algorithm)) {
            throw new BundleException("signature algorithm '" + algorithm + "' is not '" + ALGORITHM + "'");
        }
        if (!trustedId.equals(keyId)) {
            throw new BundleException("the bundle is signed by key " + keyId.substring(0, Math.min(16, keyId.length()))
                    + ", not by the trusted publisher key " + trustedId.substring(0, 16));
        }
        boolean ok;
        try {
            Signature s = Signature.getInstance("SHA256withECDSA");
            s.initVerify(trusted);
            s.update(manifest);
            ok = s.verify(raw);
        } catch (GeneralSecurityException e) {
            ok = false; // a signature that is not even DER is as bad as a wrong one
        }
        if (!ok) {
            throw new BundleException("the signature does not match the manifest (tampered or re-signed); "
                    + "the current model is kept");
        }
    }
}
