package org.fedpa.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpHandler;
import com.sun.net.httpserver.HttpServer;
import java.io.File;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.Charset;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.Signature;
import java.security.spec.ECGenParameterSpec;
import java.util.HashMap;
import java.util.Map;
import org.json.JSONObject;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/**
 * The Java client installs only bundles signed by the pinned publisher key: signatures made by
 * {@code fedpa.signing} verify here, and unsigned, tampered, re-signed, downgraded bundles and a
 * manifest below the device's privacy floor are refused before anything is installed.
 */
public class SignatureTest {
    private static final Charset UTF8 = Charset.forName("UTF-8");
    private HttpServer http;
    private final Map<String, byte[]> served = new HashMap<String, byte[]>();
    private File root;
    private final java.util.concurrent.atomic.AtomicInteger requests = new java.util.concurrent.atomic.AtomicInteger();

    @Before
    public void setUp() throws Exception {
        root = File.createTempFile("fedpa-sig", "");
        root.delete();
        http = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        http.createContext("/", new HttpHandler() {
            @Override
            public void handle(HttpExchange ex) throws IOException {
                requests.incrementAndGet();
                String path = ex.getRequestURI().getPath();
                byte[] body = served.get(path);
                int status = body == null ? 404 : 200;
                if (body == null) {
                    body = "{\"error\": \"unknown_file\", \"detail\": \"not here\"}".getBytes(UTF8);
                }
                ex.sendResponseHeaders(status, body.length);
                OutputStream out = ex.getResponseBody();
                out.write(body);
                out.close();
            }
        });
        http.start();
    }

    @After
    public void tearDown() {
        http.stop(0);
        BundleInstaller.deleteTree(root);
    }

    private static byte[] read(File f) throws IOException {
        return Bundle.readFile(f);
    }

    /** The app pins the key from its Settings before every sync; without one nothing reaches the server. */
    @Test
    public void clientWithoutPinnedKeyRefusesBeforeAnyRequest() throws Exception {
        FedPAClient c = new FedPAClient(new LocalStore(new File(root, "client")), new java.util.Random(0),
                TrainingConfig.defaults(), 5000);
        c.configure("http://127.0.0.1:" + http.getAddress().getPort(), "sig-test");
        expectNoKey(c);
        String pem = pem(keyPair());
        c.setPublisherKey(pem);
        try {
            c.setPublisherKey("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----");
            fail("accepted a malformed publisher key");
        } catch (BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().startsWith("publisher key is not"));
        }
        c.setPublisherKey(null); // the user cleared the key in Settings
        expectNoKey(c);
        assertEquals("no request without a publisher key", 0, requests.get());
        c.setAllowUnsigned(true); // the debug switch: now it syncs (and the empty test server answers 404)
        try {
            c.setup(null);
            fail("the test server has no model");
        } catch (SyncException e) {
            assertTrue(requests.get() > 0);
        }
    }

    private static void expectNoKey(FedPAClient c) {
        try {
            c.setup(null);
            fail("synced without a pinned publisher key");
        } catch (FedPAException e) {
            assertTrue(e.getClass().getSimpleName() + ": " + e.getMessage(),
                    e instanceof BundleException && e.getMessage().startsWith("no publisher key pinned"));
        }
    }

    @Test
    public void pythonSignaturesVerifyAndOthersAreRefused() throws Exception {
        File dir = Fixtures.fixture("signing");
        String pem = new String(read(new File(dir, "publisher/publisher.pub")), UTF8);
        java.security.PublicKey key = Signatures.publicKey(pem);
        byte[] manifest = read(new File(dir, "manifest.json"));
        Signatures.verify(manifest, read(new File(dir, "manifest.sig")), key);
        JSONObject sig = new JSONObject(new String(read(new File(dir, "manifest.sig")), UTF8));
        assertEquals(sig.getString("key_id"), Signatures.keyId(key));
        expectRefused(manifest, read(new File(dir, "manifest.sig-other")), key, "not by the trusted publisher key");
        expectRefused(manifest, null, key, "unsigned");
        byte[] tampered = new String(manifest, UTF8).replace("\"model_version\": 3", "\"model_version\": 4").getBytes(UTF8);
        expectRefused(tampered, read(new File(dir, "manifest.sig")), key, "does not match");
        byte[] badBase64 = new JSONObject(sig.toString()).put("signature", "*not base64*").toString().getBytes(UTF8);
        expectRefused(manifest, badBase64, key, Signatures.FILE + " is malformed: invalid base64");
        expectRefused(manifest, "{\"algorithm\": ".getBytes(UTF8), key, Signatures.FILE + " is malformed");
    }

    private static void expectRefused(byte[] manifest, byte[] sig, java.security.PublicKey key, String why) {
        try {
            Signatures.verify(manifest, sig, key);
            fail("accepted a signature that should say: " + why);
        } catch (BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains(why));
        }
    }

    // --------------------------------------------------------------- the installer, over HTTP

    private static KeyPair keyPair() throws Exception {
        KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
        g.initialize(new ECGenParameterSpec("secp256r1"));
        return g.generateKeyPair();
    }

    private static String pem(KeyPair k) {
        return "-----BEGIN PUBLIC KEY-----\n" + java.util.Base64.getMimeEncoder().encodeToString(k.getPublic().getEncoded())
                + "\n-----END PUBLIC KEY-----\n";
    }

    /** What fedpa.signing.sign_manifest writes, made with a test key. */
    private static byte[] sign(byte[] manifest, KeyPair k) throws Exception {
        Signature s = Signature.getInstance("SHA256withECDSA");
        s.initSign(k.getPrivate());
        s.update(manifest);
        return new JSONObject().put("algorithm", Signatures.ALGORITHM).put("key_id", Signatures.keyId(k.getPublic()))
                .put("signature", java.util.Base64.getEncoder().encodeToString(s.sign())).toString().getBytes(UTF8);
    }

    /** Serve the test bundle with its manifest edited by {@code edit} and signed by {@code signer} (null: unsigned). */
    private byte[] serve(String modelId, JSONObjectEdit edit, KeyPair signer) throws Exception {
        File bundle = Fixtures.bundleDir();
        JSONObject m = new JSONObject(new String(read(new File(bundle, Bundle.MANIFEST)), UTF8));
        edit.apply(m);
        byte[] manifest = m.toString().getBytes(UTF8);
        served.clear();
        served.put("/v1/models/" + modelId, manifest);
        for (java.util.Iterator<?> it = m.getJSONObject("files").keys(); it.hasNext();) {
            String name = (String) it.next();
            served.put("/v1/models/" + modelId + "/files/" + name, read(new File(bundle, name)));
        }
        if (signer != null) {
            served.put("/v1/models/" + modelId + "/files/" + Signatures.FILE, sign(manifest, signer));
        }
        return manifest;
    }

    private interface JSONObjectEdit {
        void apply(JSONObject m) throws Exception;
    }

    private static JSONObjectEdit version(final int v, final double sigma) {
        return new JSONObjectEdit() {
            @Override
            public void apply(JSONObject m) throws Exception {
                m.put("model_id", "sig-test").put("model_version", v);
                m.getJSONObject("privacy").put("noise_multiplier", sigma).put("rounds", 30);
            }
        };
    }

    private void install(LocalStore store, KeyPair pinned) throws FedPAException {
        ApiClient api = new ApiClient("http://127.0.0.1:" + http.getAddress().getPort(), null, 5000);
        BundleInstaller.install(api, "sig-test", store, new FedPAClient.Progress() {
            @Override
            public void update(String message, double fraction) {
            }
        }, Signatures.publicKey(pem(pinned)), DevicePolicy.defaults());
    }

    private void expectInstallRefused(LocalStore store, KeyPair pinned, Class<?> type, String why) {
        try {
            install(store, pinned);
            fail("installed a bundle that should be refused: " + why);
        } catch (FedPAException e) {
            assertTrue(e.getClass().getSimpleName() + ": " + e.getMessage(), type.isInstance(e) && e.getMessage().contains(why));
        }
        assertTrue("nothing half-installed", !new File(store.dir(), "bundle.incoming").exists()
                || new File(store.dir(), "bundle.incoming").list().length == 0);
    }

    @Test
    public void installerRefusesUnsignedTamperedResignedDowngradedAndWeakBundles() throws Exception {
        KeyPair publisher = keyPair();
        KeyPair attacker = keyPair();
        LocalStore store = new LocalStore(new File(root, "phone"));
        double sigma = 7.0; // clears the default floor (epsilon 8 over 30 rounds: sigma >= 6.99)

        serve("sig-test", version(2, sigma), null);
        expectInstallRefused(store, publisher, BundleException.class, "unsigned");
        serve("sig-test", version(2, 0.001), attacker);
        expectInstallRefused(store, publisher, BundleException.class, "not by the trusted publisher key");
        byte[] genuine = serve("sig-test", version(2, sigma), publisher);
        JSONObject lowered = new JSONObject(new String(genuine, UTF8));
        lowered.getJSONObject("privacy").put("noise_multiplier", 0.001);
        served.put("/v1/models/sig-test", lowered.toString().getBytes(UTF8)); // lowered under the publisher's signature
        expectInstallRefused(store, publisher, BundleException.class, "does not match");
        serve("sig-test", version(2, 1.0), publisher); // genuinely signed, but too little noise for this device
        expectInstallRefused(store, publisher, PrivacyPolicyException.class, "below this device's floor");
        assertEquals(0, BundleInstaller.installedVersion(store, "sig-test"));

        serve("sig-test", version(2, sigma), publisher);
        install(store, publisher);
        assertEquals(2, BundleInstaller.installedVersion(store, "sig-test"));
        assertTrue(new File(store.bundleDir(), Signatures.FILE).isFile());
        serve("sig-test", version(1, sigma), publisher); // an old, genuinely signed bundle replayed
        expectInstallRefused(store, publisher, BundleException.class, "refusing the downgrade");
        assertEquals(2, BundleInstaller.installedVersion(store, "sig-test"));
    }
}
