package org.fedpa.core;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import org.json.JSONObject;

/**
 * The phone's item-table client, the Java twin of {@code edge.items.ItemTableClient}: rows for its
 * candidates from {@code POST /v1/models/{id}/items/lookup}, in batches of at most the server's
 * {@code max_lookup_batch} ids, cached per table version.
 *
 * <p>A feed ranks the same candidates again and again and the table changes once in a while (a
 * refresh is a new {@code table_version}), so a cached row is served without the network until the
 * server serves another version; then the whole cache is dropped at once, so one ranking never mixes
 * rows of two table versions. Unknown items come back marked ({@code known == false}) with the
 * table's OOV row and still rank. Only item ids leave the phone, and every group value's column
 * comes back, so a lookup does not reveal the user's group.
 *
 * <p>Not thread-safe (the app calls it from its one background thread).
 */
public final class ItemTableClient {
    /** The aggregator's limit (aggregator.services.items.MAX_LOOKUP_BATCH) when its status does not say. */
    public static final int DEFAULT_MAX_BATCH = 1024;
    /** Rows kept (~30 bytes each, as edge.items.DEFAULT_MAX_CACHED): the cache is dropped when full. */
    public static final int DEFAULT_MAX_CACHED = 50000;
    /** How every failed lookup's message starts (the app tells it apart from other sync errors). */
    public static final String FAILED = "item rows unavailable: ";
    private static final int ATTEMPTS = 3; // a refresh landing mid-call restarts it, never mixes versions

    /** Where requests go: the client's current ApiClient (its token changes when the phone re-registers). */
    public interface Connection {
        ApiClient api() throws SyncException;
    }

    /** A fixed ApiClient (tools and tests). */
    public static Connection of(final ApiClient api) {
        return new Connection() {
            @Override
            public ApiClient api() {
                return api;
            }
        };
    }

    private final Connection connection;
    private final String modelId;
    private final int modelVersion; // the installed bundle's: a table for another version is refused
    private final int maxCached;
    private int maxBatch; // 0: the server's max_lookup_batch, read on first use
    private int tableVersion; // of the cached rows; 0: nothing cached
    private final Map<String, ItemRows.Row> rows = new HashMap<String, ItemRows.Row>(); // opaque: ItemRows reads them
    private int requests;

    /** Usage: {@code new ItemTableClient(ItemTableClient.of(api), "demo", manifest.modelVersion).rows(ids)}. */
    public ItemTableClient(Connection connection, String modelId, int modelVersion) {
        this(connection, modelId, modelVersion, 0, DEFAULT_MAX_CACHED);
    }

    /** {@code maxBatch} 0 asks the server; a smaller one is for tests and slow links. */
    public ItemTableClient(Connection connection, String modelId, int modelVersion, int maxBatch, int maxCached) {
        if (maxBatch < 0 || maxCached < 1) {
            throw new IllegalArgumentException("maxBatch must be >= 0 and maxCached >= 1, got " + maxBatch + ", "
                    + maxCached);
        }
        this.connection = connection;
        this.modelId = modelId;
        this.modelVersion = modelVersion;
        this.maxBatch = maxBatch;
        this.maxCached = maxCached;
    }

    /** Lookup requests made so far (tests count them). */
    public int requests() {
        return requests;
    }

    /** The table version of the cached rows, 0 when nothing is cached. */
    public int tableVersion() {
        return tableVersion;
    }

    public int cached() {
        return rows.size();
    }

    public void clear() {
        rows.clear();
        tableVersion = 0;
    }

    /** {@code GET …/items}: learns the batch limit, and drops the cache when the server serves another version. */
    public JSONObject refresh() throws SyncException {
        JSONObject status;
        try {
            status = connection.api().itemTable(modelId);
        } catch (SyncException e) {
            throw failed("check the item table", e);
        }
        if (maxBatch == 0) {
            maxBatch = Math.max(1, status.optInt("max_lookup_batch", DEFAULT_MAX_BATCH));
        }
        int served = status.optInt("table_version", 0);
        if (tableVersion != 0 && served != tableVersion) {
            clear();
        }
        return status;
    }

    /** Rows for {@code itemIds} in order (unknown ids: {@code known == false}, the OOV row). */
    public ItemRows rows(List<String> itemIds) throws FedPAException {
        for (String id : itemIds) {
            if (id == null || id.trim().isEmpty()) {
                throw new PayloadException("candidate item ids must not be missing or empty");
            }
        }
        if (itemIds.isEmpty()) {
            throw new PayloadException("no candidates to look up");
        }
        boolean complete = false;
        for (int attempt = 0; attempt < ATTEMPTS && !complete; attempt++) {
            List<String> missing = missing(itemIds);
            if (maxBatch == 0 && !missing.isEmpty()) {
                refresh();
            }
            if (rows.size() + missing.size() > maxCached) {
                rows.clear(); // bounded memory: forget everything (keeps the version), fetch what is needed
                missing = missing(itemIds);
            }
            boolean restarted = false;
            for (int start = 0; start < missing.size() && !restarted; start += maxBatch) {
                List<String> part = missing.subList(start, Math.min(missing.size(), start + maxBatch));
                ItemRows got = fetch(part);
                if (tableVersion != 0 && got.tableVersion != tableVersion) {
                    clear(); // the table moved on: rows of two versions are never mixed
                    restarted = true;
                }
                tableVersion = got.tableVersion;
                for (int i = 0; i < part.size(); i++) {
                    rows.put(part.get(i), got.row(i));
                }
            }
            complete = !restarted && missing(itemIds).isEmpty();
        }
        if (!complete) {
            throw new SyncException(200, "table_changed", FAILED + "the item table kept changing during one lookup; try again");
        }
        List<ItemRows.Row> out = new ArrayList<ItemRows.Row>();
        for (String id : itemIds) {
            out.add(rows.get(id));
        }
        return ItemRows.of(modelVersion, tableVersion, out);
    }

    private List<String> missing(List<String> ids) {
        LinkedHashSet<String> out = new LinkedHashSet<String>(); // distinct, first-seen order
        for (String id : ids) {
            if (!rows.containsKey(id)) {
                out.add(id);
            }
        }
        return new ArrayList<String>(out);
    }

    private ItemRows fetch(List<String> ids) throws FedPAException {
        requests++;
        ItemRows got;
        try {
            got = connection.api().lookupItems(modelId, ids, ids.size());
        } catch (SyncException e) {
            throw failed("look up " + ids.size() + " candidate(s)", e);
        }
        if (got.size() != ids.size()) {
            throw new SyncException(200, "bad_response", FAILED + "the lookup answered " + got.size() + " rows for "
                    + ids.size() + " ids");
        }
        if (got.modelVersion != modelVersion) {
            throw new SyncException(200, "model_version_mismatch", FAILED + "the server's item table is for model version "
                    + got.modelVersion + ", this phone's model is v" + modelVersion + ": sync to download the new model first");
        }
        return got;
    }

    /** A failed lookup as one clear sentence, keeping the server's status and error code. */
    private static SyncException failed(String what, SyncException e) {
        String why = "no_item_table".equals(e.code())
                ? "the server publishes no item table for this model yet (the operator runs fedpa-export items and "
                        + "publishes it); this model ranks with item-table columns"
                : e.getMessage();
        SyncException out = new SyncException(e.status(), e.code(), FAILED + "could not " + what
                + " on the server: " + why);
        out.initCause(e);
        return out;
    }
}
