package org.fedpa.core;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.Charset;
import java.util.Arrays;

/**
 * Crash-safe files: each is written whole to a temporary file, fsynced, and renamed over the old
 * one (whose previous version is kept as {@code name.bak}). Contents carry a one-line envelope
 * {@code FEDPA1 <sha256> <length>} so a torn or bit-flipped file is detected, never trusted.
 */
final class AtomicFiles {
    private static final Charset ASCII = Charset.forName("US-ASCII");
    private static final String MAGIC = "FEDPA1 ";

    private AtomicFiles() {
    }

    /** Outcome of a read: the payload, and a warning when the backup copy had to be used. */
    static final class Read {
        final byte[] data;
        final String warning;

        Read(byte[] data, String warning) {
            this.data = data;
            this.warning = warning;
        }
    }

    static void write(File file, byte[] payload) throws StoreException {
        byte[] head = (MAGIC + Bundle.sha256(payload) + " " + payload.length + "\n").getBytes(ASCII);
        File tmp = new File(file.getParentFile(), "." + file.getName() + ".tmp");
        try {
            FileOutputStream out = new FileOutputStream(tmp);
            try {
                out.write(head);
                out.write(payload);
                out.flush();
                out.getFD().sync();
            } finally {
                out.close();
            }
        } catch (IOException e) {
            tmp.delete();
            throw new StoreException("cannot write " + file + ": " + e.getMessage(), e);
        }
        File bak = backup(file);
        if (file.exists() && isValid(file) && !file.renameTo(bak)) {
            tmp.delete();
            throw new StoreException("cannot keep the previous " + file + " as " + bak);
        }
        if (!tmp.renameTo(file)) {
            throw new StoreException("cannot rename " + tmp + " to " + file);
        }
    }

    /**
     * The payload of {@code file}, falling back to its backup; null when neither exists. A corrupt
     * file is renamed to {@code name.corrupt-<millis>} (kept, never deleted) and reported.
     */
    static Read read(File file) throws StoreException {
        String problem = null;
        if (file.exists()) {
            try {
                return new Read(unwrap(file), null);
            } catch (StoreException e) {
                problem = e.getMessage();
                File aside = new File(file.getParentFile(), file.getName() + ".corrupt-" + System.currentTimeMillis());
                file.renameTo(aside);
                problem += " (kept as " + aside.getName() + ")";
            }
        }
        File bak = backup(file);
        if (bak.exists()) {
            try {
                byte[] data = unwrap(bak);
                return new Read(data, problem == null ? null : problem + "; restored the previous copy");
            } catch (StoreException e) {
                throw new StoreException(problem == null ? e.getMessage() : problem + "; its backup is corrupt too: "
                        + e.getMessage());
            }
        }
        if (problem != null) {
            throw new StoreException(problem + "; no backup copy exists");
        }
        return null;
    }

    /** Remove a file and its backup (a finished pending upload must not come back from .bak). */
    static void delete(File file) {
        file.delete();
        backup(file).delete();
    }

    private static File backup(File file) {
        return new File(file.getParentFile(), file.getName() + ".bak");
    }

    private static boolean isValid(File file) {
        try {
            unwrap(file);
            return true;
        } catch (StoreException e) {
            return false;
        }
    }

    private static byte[] unwrap(File file) throws StoreException {
        byte[] all;
        try {
            all = Bundle.readFile(file);
        } catch (IOException e) {
            throw new StoreException(file + ": cannot read (" + e.getMessage() + ")", e);
        }
        int nl = -1;
        for (int i = 0; i < Math.min(all.length, 128); i++) {
            if (all[i] == '\n') {
                nl = i;
                break;
            }
        }
        String head = nl > 0 ? new String(all, 0, nl, ASCII) : "";
        String[] parts = head.split(" ");
        if (parts.length != 3 || !head.startsWith(MAGIC)) {
            throw new StoreException(file + " is corrupt: no FEDPA1 header");
        }
        byte[] payload = Arrays.copyOfRange(all, nl + 1, all.length);
        if (!String.valueOf(payload.length).equals(parts[2])) {
            throw new StoreException(file + " is corrupt: " + payload.length + " bytes, header says " + parts[2]
                    + " (truncated write?)");
        }
        if (!Bundle.sha256(payload).equals(parts[1])) {
            throw new StoreException(file + " is corrupt: sha256 mismatch");
        }
        return payload;
    }
}
