package org.fedpa.core;

import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * The program input {@code x} of candidates, assembled as the Python edge client does
 * ({@code edge.signals.DeviceSignals} + {@code FeatureEncoder.fill}): the user's codes, the item's
 * own feature codes, then the bundle's signal columns —
 *
 * <ul>
 *   <li>{@code item_table} columns: the candidate's row of the aggregator's item table
 *       ({@link ItemTableClient}: batched, cached per table version; an unknown item gets the
 *       table's OOV row; a per-group column takes the user's own group value);
 *   <li>{@code history} columns: the user's own earlier interactions ({@link HistoryState}), kept in
 *       the store's {@code history.json}, updated with every interaction, rebuilt from the interaction
 *       log when it is missing, behind it (a crash between the two writes) or for another schema, and
 *       never uploaded (uploads are built from shared-tensor deltas only).
 * </ul>
 *
 * A base-features bundle has neither: {@link #active()} is false and nothing is looked up.
 *
 * <p>Every column lands at its position in the schema's column order. A labelled row is stored as
 * the device would score it at that moment: its history is that of the rows labelled before it
 * (timestamps strictly increase, see {@link FedPAClient#label}), the project's leak-free rule.
 */
public final class DeviceSignals {
    private static final Charset UTF8 = Charset.forName("UTF-8");

    private final LocalStore store;
    private final Manifest manifest;
    private final ItemTableClient items; // null: no item-table columns
    private ItemVectors vectors; // where fetched rows' item vectors go (the engine's); null: nowhere
    private final int[] userPositions;
    private final int[] itemPositions;
    private final int[] tablePositions;
    private final String schemaDigest;
    private HistoryState history; // null: no history columns
    private long observed; // interactions the history has seen

    private DeviceSignals(LocalStore store, Manifest manifest, ItemTableClient items) throws BundleException {
        this.store = store;
        this.manifest = manifest;
        int nf = manifest.config.nFeatures();
        boolean listed = !manifest.features.isEmpty(); // a manifest without a schema: user, then item columns
        this.userPositions = listed ? manifest.positions(Manifest.Feature.USER) : range(0, manifest.config.nUserFeatures);
        this.itemPositions = listed ? manifest.positions(Manifest.Feature.ITEM) : range(manifest.config.nUserFeatures, nf);
        this.tablePositions = manifest.positions(Manifest.Feature.ITEM_TABLE);
        if (listed && manifest.features.size() != nf) {
            throw new BundleException("feature_schema lists " + manifest.features.size() + " features, the model has "
                    + nf + " inputs");
        }
        for (int k = 0; k < userPositions.length; k++) {
            if (userPositions[k] != k || userPositions.length != manifest.config.nUserFeatures) {
                throw new BundleException("feature_schema: the " + manifest.config.nUserFeatures
                        + " user features must come first");
            }
        }
        this.items = tablePositions.length > 0 ? items : null;
        if (tablePositions.length > 0 && items == null) {
            throw new BundleException("this model's features include item-table columns: ranking needs a server "
                    + "connection for the item rows");
        }
        boolean hasHistory = manifest.positions(Manifest.Feature.HISTORY).length > 0;
        JSONObject schema = hasHistory ? manifest.featureSchema() : null;
        this.history = hasHistory ? new HistoryState(schema) : null;
        this.schemaDigest = hasHistory ? Bundle.sha256(schema.toString().getBytes(UTF8)) : "";
    }

    private static int[] range(int from, int to) {
        int[] out = new int[to - from];
        for (int k = 0; k < out.length; k++) {
            out[k] = from + k;
        }
        return out;
    }

    /**
     * The signals of the installed model: the stored history, caught up with (or rebuilt from) the
     * interaction log; {@code items} may be null for a bundle without item-table columns.
     */
    public static DeviceSignals open(LocalStore store, Manifest manifest, ItemTableClient items, long[] userCodes)
            throws FedPAException {
        DeviceSignals s = new DeviceSignals(store, manifest, items);
        if (s.history == null) {
            return s;
        }
        JSONObject stored = store.loadHistory();
        if (stored != null && s.schemaDigest.equals(stored.optString("schema"))) {
            try {
                s.history.load(stored.getJSONObject("state"));
                s.observed = stored.getLong("observed");
            } catch (JSONException | StoreException e) {
                s.history = new HistoryState(manifest.featureSchema());
                s.observed = 0;
            }
        }
        List<Interaction> log = store.loadInteractions();
        if (s.observed > log.size()) { // the log was replaced: start over from it
            s.history = new HistoryState(manifest.featureSchema());
            s.observed = 0;
        }
        if (s.observed < log.size()) {
            for (Interaction i : log.subList((int) s.observed, log.size())) {
                s.history.observe(s.storedRow(userCodes, i), i.label);
            }
            s.observed = log.size();
            s.save();
        }
        return s;
    }

    /** Whether the bundle has signal columns at all (a base-features bundle has none). */
    public boolean active() {
        return items != null || history != null;
    }

    public boolean needsItems() {
        return items != null;
    }

    public boolean hasHistory() {
        return history != null;
    }

    /** The item-table client (null without item-table columns). */
    public ItemTableClient items() {
        return items;
    }

    /** Send every fetched row's item vector to {@code sink} (the engine's, for a bundle that takes them). */
    public void learnVectorsInto(ItemVectors sink) {
        this.vectors = sink;
    }

    /** Fetch the rows of {@code ids} only for their item vectors (items already in the log). */
    public void learnVectors(List<String> ids) throws FedPAException {
        if (items != null && vectors != null && !ids.isEmpty()) {
            vectors.learn(items.rows(ids));
        }
    }

    /** Interactions the history has seen (0 without history columns). */
    public long observed() {
        return observed;
    }

    /** How many of the item's own feature codes a candidate carries (the {@code item}-source columns). */
    public int itemFeatureCount() {
        return itemPositions.length;
    }

    /**
     * Full input rows {@code [n · nFeatures]} for candidates: {@code itemCodes.get(i)} holds the
     * item-source feature codes of candidate {@code i} (in schema order) and {@code ids.get(i)} its
     * raw item id (used only with item-table columns). The history is read as it is now; nothing is observed.
     */
    public long[] fill(long[] userCodes, List<long[]> itemCodes, List<String> ids, Map<String, Integer> groups)
            throws FedPAException {
        int n = itemCodes.size();
        int nf = manifest.config.nFeatures();
        if (userCodes.length != userPositions.length) {
            throw new PayloadException("user has " + userCodes.length + " feature codes, the model needs "
                    + userPositions.length);
        }
        long[] x = new long[n * nf];
        for (int i = 0; i < n; i++) {
            long[] item = itemCodes.get(i);
            if (item.length != itemPositions.length) {
                throw new PayloadException("item " + (ids == null ? i : ids.get(i)) + " has " + item.length
                        + " feature codes, the model's item features are " + itemPositions.length);
            }
            System.arraycopy(userCodes, 0, x, i * nf, userCodes.length);
            for (int k = 0; k < itemPositions.length; k++) {
                x[i * nf + itemPositions[k]] = item[k];
            }
        }
        if (items != null && n > 0) {
            if (ids == null || ids.size() != n) {
                throw new PayloadException("item ids are needed for the item-table columns (" + n + " candidates, "
                        + (ids == null ? "no" : String.valueOf(ids.size())) + " ids)");
            }
            ItemRows rows = items.rows(ids);
            if (vectors != null) {
                vectors.learn(rows); // the programs embed these candidates' item codes from them
            }
            long[][] table = rows.featureCodes(manifest, groups);
            for (int i = 0; i < n; i++) {
                for (int k = 0; k < tablePositions.length; k++) {
                    x[i * nf + tablePositions[k]] = table[i][k];
                }
            }
        }
        if (history != null) {
            long[] row = new long[nf];
            for (int i = 0; i < n; i++) {
                System.arraycopy(x, i * nf, row, 0, nf); // the history fields may be item-table columns (item code)
                history.fill(row);
                System.arraycopy(row, 0, x, i * nf, nf);
            }
        }
        for (int i = 0; i < x.length; i++) {
            int j = i % nf;
            if (x[i] < 0 || x[i] >= manifest.config.cardinalities[j]) {
                String name = j < manifest.features.size() ? manifest.features.get(j).name : "#" + j;
                throw new PayloadException("feature '" + name + "': code " + x[i]
                        + " outside 0.." + (manifest.config.cardinalities[j] - 1));
            }
        }
        return x;
    }

    /**
     * Add a labelled row (full width, as it was stored) to the history and persist it. The caller
     * has already appended the interaction to the log: a crash in between is caught up on the next
     * {@link #open}, because the record says how many log rows it has seen.
     */
    public void record(long[] row, int label) throws StoreException {
        if (history == null) {
            return;
        }
        history.observe(row, label);
        observed += 1;
        save();
    }

    /** A stored interaction as a full row: the user's codes, then its item-side codes as scored. */
    long[] storedRow(long[] userCodes, Interaction i) throws StoreException {
        int nu = userPositions.length;
        int nf = manifest.config.nFeatures();
        if (i.itemCodes.length != nf - nu) {
            throw new StoreException("a stored interaction with item " + i.itemKey + " has " + i.itemCodes.length
                    + " item-side codes, this model needs " + (nf - nu) + " (it was labelled under another model); "
                    + "Settings → Reset local data starts a fresh log");
        }
        long[] row = new long[nf];
        System.arraycopy(userCodes, 0, row, 0, nu);
        System.arraycopy(i.itemCodes, 0, row, nu, nf - nu);
        return row;
    }

    private void save() throws StoreException {
        if (history == null) {
            return;
        }
        JSONObject o = new JSONObject();
        try {
            o.put("schema", schemaDigest);
            o.put("observed", observed);
            o.put("state", history.toJson());
        } catch (JSONException e) {
            throw new IllegalStateException(e);
        }
        store.saveHistory(o);
    }

    /** The item-source codes of a full row (what a catalogue item carries), for tests and tools. */
    long[] itemFeatures(long[] row) {
        long[] out = new long[itemPositions.length];
        for (int k = 0; k < out.length; k++) {
            out[k] = row[itemPositions[k]];
        }
        return out;
    }

    static List<long[]> one(long[] codes) {
        List<long[]> out = new ArrayList<long[]>();
        out.add(codes);
        return out;
    }
}
