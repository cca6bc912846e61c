package org.fedpa.core;

import java.io.File;
import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * Everything the phone keeps between rounds, crash-safe ({@link AtomicFiles}); the same layout as
 * the Python edge store:
 *
 * <pre>
 *   state.json                   device id/token, counters, epsilon, pending upload (commit record)
 *   private.safetensors          the private user adapter; never leaves the device
 *   interactions.json            the labelled taps and skips, each row as the device scored it
 *   history.json                 the history features' state (full-features bundles) and how many
 *                                interactions it has seen; never uploaded
 *   shared.safetensors           last downloaded gate + group adapters (offline ranking)
 *   pending.bin                  an upload built (noised, epsilon charged) but not yet acknowledged
 *   pending.private.safetensors  the private adapter trained in that round (committed on 2xx)
 *   bundle/                      the verified model bundle
 * </pre>
 *
 * A corrupt file is detected by its checksum, set aside and replaced by its previous copy; what
 * happened is listed in {@link #warnings()} so the app can say it.
 */
public final class LocalStore {
    private static final Charset UTF8 = Charset.forName("UTF-8");
    static final String STATE = "state.json";
    static final String PRIVATE = "private.safetensors";
    static final String INTERACTIONS = "interactions.json";
    static final String SHARED = "shared.safetensors";
    static final String HISTORY = "history.json";
    static final String PENDING = "pending.bin";
    static final String PENDING_PRIVATE = "pending.private.safetensors";

    private final File dir;
    private final List<String> warnings = new ArrayList<String>();

    public LocalStore(File dir) throws StoreException {
        if (!dir.isDirectory() && !dir.mkdirs()) {
            throw new StoreException("cannot create the local store folder " + dir);
        }
        this.dir = dir;
    }

    public File dir() {
        return dir;
    }

    public File bundleDir() {
        return new File(dir, "bundle");
    }

    /** Problems found and repaired while reading (shown to the user once, then cleared). */
    public synchronized List<String> takeWarnings() {
        List<String> out = new ArrayList<String>(warnings);
        warnings.clear();
        return out;
    }

    private byte[] read(String name) throws StoreException {
        AtomicFiles.Read r = AtomicFiles.read(new File(dir, name));
        if (r == null) {
            return null;
        }
        if (r.warning != null) {
            synchronized (this) {
                warnings.add(r.warning);
            }
        }
        return r.data;
    }

    private void write(String name, byte[] data) throws StoreException {
        AtomicFiles.write(new File(dir, name), data);
    }

    // ---------------------------------------------------------------- state

    public DeviceState loadState() throws StoreException {
        byte[] data = read(STATE);
        if (data == null) {
            return new DeviceState();
        }
        try {
            return DeviceState.fromJson(new JSONObject(new String(data, UTF8)));
        } catch (JSONException e) {
            throw new StoreException(new File(dir, STATE) + " does not hold a device state: " + e.getMessage(), e);
        }
    }

    public void saveState(DeviceState state) throws StoreException {
        try {
            write(STATE, state.toJson().toString(2).getBytes(UTF8));
        } catch (JSONException e) {
            throw new StoreException("cannot serialise the device state: " + e.getMessage(), e);
        }
    }

    // ---------------------------------------------------------------- tensors

    /** The private adapter by parameter name, or null before the first round. */
    public Map<String, Tensor> loadPrivate() throws StoreException {
        return tensors(PRIVATE);
    }

    public void savePrivate(Map<String, Tensor> tensors) throws StoreException {
        write(PRIVATE, SafeTensors.encode(tensors));
    }

    /** The last downloaded shared tensors (wire names) with their metadata, or null. */
    public SafeTensors loadShared() throws StoreException {
        byte[] data = read(SHARED);
        return data == null ? null : decode(SHARED, data);
    }

    public void saveShared(Map<String, Tensor> wire, Map<String, String> metadata) throws StoreException {
        write(SHARED, SafeTensors.encode(wire, metadata));
    }

    private Map<String, Tensor> tensors(String name) throws StoreException {
        byte[] data = read(name);
        return data == null ? null : decode(name, data).tensors();
    }

    private SafeTensors decode(String name, byte[] data) throws StoreException {
        try {
            return SafeTensors.decode(data);
        } catch (PayloadException e) {
            throw new StoreException(new File(dir, name) + ": " + e.getMessage(), e);
        }
    }

    // ---------------------------------------------------------------- interactions

    public List<Interaction> loadInteractions() throws StoreException {
        byte[] data = read(INTERACTIONS);
        List<Interaction> out = new ArrayList<Interaction>();
        if (data == null) {
            return out;
        }
        try {
            JSONArray a = new JSONArray(new String(data, UTF8));
            for (int i = 0; i < a.length(); i++) {
                out.add(Interaction.fromJson(a.getJSONObject(i)));
            }
        } catch (JSONException e) {
            throw new StoreException(new File(dir, INTERACTIONS) + " does not hold interactions: " + e.getMessage(), e);
        } catch (IllegalArgumentException e) {
            throw new StoreException(new File(dir, INTERACTIONS) + ": " + e.getMessage(), e);
        }
        return out;
    }

    /** Append one interaction (the whole log is rewritten atomically: small, and never torn). */
    public synchronized List<Interaction> addInteraction(Interaction interaction) throws StoreException {
        List<Interaction> all = loadInteractions();
        all.add(interaction);
        JSONArray a = new JSONArray();
        try {
            for (Interaction i : all) {
                a.put(i.toJson());
            }
        } catch (JSONException e) {
            throw new StoreException("cannot serialise interactions: " + e.getMessage(), e);
        }
        write(INTERACTIONS, a.toString().getBytes(UTF8));
        return Collections.unmodifiableList(all);
    }

    // ---------------------------------------------------------------- history

    /** The stored history record ({@link DeviceSignals} writes it), or null if there is none or it is unreadable. */
    public JSONObject loadHistory() throws StoreException {
        byte[] data;
        try {
            data = read(HISTORY);
        } catch (StoreException e) { // both copies corrupt (set aside by AtomicFiles): a summary, so rebuild it
            synchronized (this) {
                warnings.add(e.getMessage() + "; the history features are rebuilt from the interaction log");
            }
            return null;
        }
        if (data == null) {
            return null;
        }
        try {
            return new JSONObject(new String(data, UTF8));
        } catch (JSONException e) {
            return null; // rebuilt from the interaction log, which is the source of truth
        }
    }

    public void saveHistory(JSONObject record) throws StoreException {
        write(HISTORY, record.toString().getBytes(UTF8));
    }

    // ---------------------------------------------------------------- pending upload

    /**
     * Stage an upload: its exact bytes and the private adapter of that round are written first,
     * then the state that names them (the commit). A crash before the commit leaves the previous
     * round intact; after it, the upload is resent verbatim (never re-noised).
     */
    public void stagePending(byte[] body, Map<String, Tensor> newPrivate, DeviceState state) throws StoreException {
        write(PENDING, body);
        write(PENDING_PRIVATE, SafeTensors.encode(newPrivate));
        saveState(state);
    }

    public byte[] pendingBody() throws StoreException {
        byte[] body = read(PENDING);
        if (body == null) {
            throw new StoreException("the state names a pending upload but " + new File(dir, PENDING) + " is missing");
        }
        return body;
    }

    /**
     * Close the pending upload. Accepted: the round's private adapter becomes current. Refused:
     * the private adapter stays as before the round. Either way the state is committed last.
     */
    public void finishPending(boolean accepted, DeviceState state) throws StoreException {
        if (accepted) {
            Map<String, Tensor> trained = tensors(PENDING_PRIVATE);
            if (trained != null) {
                savePrivate(trained);
            }
        }
        state.pendingNonce = null;
        saveState(state);
        AtomicFiles.delete(new File(dir, PENDING));
        AtomicFiles.delete(new File(dir, PENDING_PRIVATE));
    }
}
