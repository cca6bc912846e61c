package org.fedpa.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.FileOutputStream;
import java.io.RandomAccessFile;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/** The local store survives crashes and corruption without losing adapters or interactions. */
public class LocalStoreTest {
    private File dir;
    private LocalStore store;

    @Before
    public void setUp() throws Exception {
        dir = File.createTempFile("fedpa-store", "");
        dir.delete();
        store = new LocalStore(dir);
    }

    @After
    public void tearDown() {
        BundleInstaller.deleteTree(dir);
    }

    private static Map<String, Tensor> adapter(float v) {
        Map<String, Tensor> m = new LinkedHashMap<String, Tensor>();
        m.put("layers.0.user.lora_A", Tensor.of(new float[] {v, v + 1, v + 2}, 1, 3));
        return m;
    }

    private static void flipByte(File f, long at) throws Exception {
        RandomAccessFile raf = new RandomAccessFile(f, "rw");
        long pos = at < 0 ? raf.length() + at : at;
        raf.seek(pos);
        int b = raf.read();
        raf.seek(pos);
        raf.write(b ^ 0x20);
        raf.close();
    }

    @Test
    public void freshStoreIsEmpty() throws Exception {
        assertNull(store.loadPrivate());
        assertTrue(store.loadInteractions().isEmpty());
        assertNull(store.loadState().token);
    }

    @Test
    public void interactionsAndStateSurviveReopening() throws Exception {
        store.addInteraction(new Interaction("item-1", new long[] {1, 2}, 1, 10));
        store.addInteraction(new Interaction("item-2", new long[] {3, 4}, 0, 11));
        DeviceState s = store.loadState();
        s.token = "t0k";
        s.epsilonSpent = 1.25;
        s.userCodes = new long[] {2, 1};
        store.saveState(s);
        LocalStore again = new LocalStore(dir);
        List<Interaction> log = again.loadInteractions();
        assertEquals(2, log.size());
        assertArrayEquals(new long[] {3, 4}, log.get(1).itemCodes);
        assertEquals(0, log.get(1).label);
        assertEquals("t0k", again.loadState().token);
        assertEquals(1.25, again.loadState().epsilonSpent, 0);
        assertArrayEquals(new long[] {2, 1}, again.loadState().userCodes);
    }

    @Test
    public void bitFlipInInteractionsRestoresThePreviousCopyAndSaysSo() throws Exception {
        store.addInteraction(new Interaction("a", new long[] {1}, 1, 1));
        store.addInteraction(new Interaction("b", new long[] {2}, 0, 2));
        flipByte(new File(dir, LocalStore.INTERACTIONS), -3);
        List<Interaction> log = store.loadInteractions();
        assertEquals("the previous copy (one interaction) is used", 1, log.size());
        List<String> warnings = store.takeWarnings();
        assertEquals(1, warnings.size());
        assertTrue(warnings.get(0), warnings.get(0).contains("sha256 mismatch") && warnings.get(0).contains("restored"));
        String[] kept = dir.list();
        boolean corruptKept = false;
        for (String name : kept) {
            corruptKept |= name.startsWith(LocalStore.INTERACTIONS + ".corrupt-");
        }
        assertTrue("the corrupt file is kept for inspection", corruptKept);
    }

    @Test
    public void corruptFileWithoutBackupIsAClearErrorAndIsKept() throws Exception {
        store.savePrivate(adapter(1f));
        File f = new File(dir, LocalStore.PRIVATE);
        FileOutputStream out = new FileOutputStream(f);
        out.write("garbage".getBytes("UTF-8"));
        out.close();
        try {
            store.loadPrivate();
            fail("read a corrupt adapter");
        } catch (StoreException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("no FEDPA1 header") && e.getMessage().contains("kept as"));
        }
    }

    @Test
    public void truncatedWriteIsDetected() throws Exception {
        store.savePrivate(adapter(1f));
        store.savePrivate(adapter(5f));
        File f = new File(dir, LocalStore.PRIVATE);
        RandomAccessFile raf = new RandomAccessFile(f, "rw");
        raf.setLength(raf.length() - 4);
        raf.close();
        assertEquals("previous adapter restored", 1f, store.loadPrivate().get("layers.0.user.lora_A").data()[0], 0f);
        assertTrue(store.takeWarnings().get(0).contains("truncated"));
    }

    @Test
    public void leftoverTempFileFromACrashIsIgnored() throws Exception {
        store.savePrivate(adapter(2f));
        FileOutputStream out = new FileOutputStream(new File(dir, "." + LocalStore.PRIVATE + ".tmp"));
        out.write(new byte[] {1, 2, 3}); // a write that died before its rename
        out.close();
        assertEquals(2f, store.loadPrivate().get("layers.0.user.lora_A").data()[0], 0f);
        store.savePrivate(adapter(3f));
        assertEquals(3f, store.loadPrivate().get("layers.0.user.lora_A").data()[0], 0f);
    }

    @Test
    public void pendingUploadCommitsItsAdapterOnlyWhenAccepted() throws Exception {
        store.savePrivate(adapter(1f));
        DeviceState s = store.loadState();
        s.pendingNonce = "nonce-0123456789ab";
        store.stagePending(new byte[] {9, 9}, adapter(2f), s);
        LocalStore reopened = new LocalStore(dir); // as after a crash
        DeviceState r = reopened.loadState();
        assertEquals("nonce-0123456789ab", r.pendingNonce);
        assertArrayEquals(new byte[] {9, 9}, reopened.pendingBody());
        assertEquals("not committed yet", 1f, reopened.loadPrivate().get("layers.0.user.lora_A").data()[0], 0f);
        reopened.finishPending(false, r);
        assertEquals("refused: adapter as before", 1f, reopened.loadPrivate().get("layers.0.user.lora_A").data()[0], 0f);
        assertNull(reopened.loadState().pendingNonce);

        s = reopened.loadState();
        s.pendingNonce = "nonce-second-round";
        reopened.stagePending(new byte[] {7}, adapter(4f), s);
        reopened.finishPending(true, s);
        assertEquals("accepted: trained adapter", 4f, reopened.loadPrivate().get("layers.0.user.lora_A").data()[0], 0f);
        assertTrue(!new File(dir, LocalStore.PENDING).exists() && !new File(dir, LocalStore.PENDING + ".bak").exists());
    }
}
