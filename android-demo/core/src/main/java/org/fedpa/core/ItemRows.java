package org.fedpa.core;

import java.util.List;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * The aggregator's answer to an item-table lookup ({@code fedpa.runtime.items.ItemRows}): per
 * candidate, in request order, the frequent-item code, one code per table column and whether the
 * server knows the item ({@code known == false} is the OOV marker: item code 0 and the table's
 * default row). The columns are the bundle schema's {@code item_table} features, a per-group
 * feature with one column per value of its group attribute; the device picks its own value's.
 */
public final class ItemRows {
    public final int modelVersion;
    public final int tableVersion;
    public final long[] itemCode;
    public final int[][] codes; // [n][columns]
    public final boolean[] known;

    private ItemRows(int modelVersion, int tableVersion, long[] itemCode, int[][] codes, boolean[] known) {
        this.modelVersion = modelVersion;
        this.tableVersion = tableVersion;
        this.itemCode = itemCode;
        this.codes = codes;
        this.known = known;
    }

    public int size() {
        return itemCode.length;
    }

    /** Parse a lookup answer body (safetensors: item_code I32, codes U8 [n, C], known U8). */
    public static ItemRows decode(byte[] body) throws PayloadException {
        SafeTensors st = SafeTensors.decode(body);
        Tensor code = st.tensors().get("item_code");
        Tensor cols = st.tensors().get("codes");
        Tensor known = st.tensors().get("known");
        if (code == null || cols == null || known == null || st.tensors().size() != 3) {
            throw new PayloadException("item lookup answer must hold item_code, codes and known, got "
                    + st.tensors().keySet());
        }
        int n = code.numel();
        if (cols.rank() != 2 || cols.dim(0) != n || known.numel() != n) {
            throw new PayloadException("item lookup answer: codes " + cols + " and known " + known
                    + " do not fit " + n + " rows");
        }
        String raw = st.metadata().get("fedpa.items");
        int modelVersion;
        int tableVersion;
        try {
            JSONObject meta = new JSONObject(raw == null ? "" : raw);
            modelVersion = meta.getInt("model_version");
            tableVersion = meta.getInt("table_version");
        } catch (JSONException e) {
            throw new PayloadException("item lookup answer: missing or malformed fedpa.items metadata", e);
        }
        int c = cols.dim(1);
        int[][] out = new int[n][c];
        boolean[] isKnown = new boolean[n];
        long[] flat = cols.longs();
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < c; j++) {
                out[i][j] = (int) flat[i * c + j];
            }
            isKnown[i] = known.longs()[i] != 0;
        }
        return new ItemRows(modelVersion, tableVersion, code.longs().clone(), out, isKnown);
    }

    /** Answers of consecutive batches as one (they must come from one table version). */
    static ItemRows join(List<ItemRows> parts) throws SyncException {
        int n = 0;
        for (ItemRows p : parts) {
            if (p.tableVersion != parts.get(0).tableVersion) {
                throw new SyncException(200, "table_changed", "the item table changed from version "
                        + parts.get(0).tableVersion + " to " + p.tableVersion + " during one lookup; look up again");
            }
            n += p.size();
        }
        long[] code = new long[n];
        int[][] codes = new int[n][];
        boolean[] known = new boolean[n];
        int k = 0;
        for (ItemRows p : parts) {
            for (int i = 0; i < p.size(); i++, k++) {
                code[k] = p.itemCode[i];
                codes[k] = p.codes[i];
                known[k] = p.known[i];
            }
        }
        return parts.isEmpty() ? new ItemRows(0, 0, code, codes, known)
                : new ItemRows(parts.get(0).modelVersion, parts.get(0).tableVersion, code, codes, known);
    }

    /** The lookup request body for these raw item ids. */
    static byte[] request(List<String> itemIds) {
        JSONObject body = new JSONObject();
        try {
            body.put("item_ids", new org.json.JSONArray(itemIds));
        } catch (JSONException e) {
            throw new IllegalStateException(e);
        }
        return body.toString().getBytes(java.nio.charset.Charset.forName("UTF-8"));
    }
}
