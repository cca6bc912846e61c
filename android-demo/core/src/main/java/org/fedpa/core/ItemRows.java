package org.fedpa.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * The aggregator's answer to an item-table lookup ({@code fedpa.runtime.items.ItemRows}): per
 * candidate, in request order, the frequent-item code, one code per table column and whether the
 * server knows the item ({@code known == false} is the OOV marker: item code 0 and the table's
 * default row). The columns are the bundle schema's {@code item_table} features, a per-group
 * feature with one column per value of its group attribute; the device picks its own value's.
 * Format 2: with {@code vector_dim} d > 0 each row also carries its item vector (int8 [d] + a
 * float32 scale, dequantised here as {@code (float) q * scale}, the bits Python computes), which
 * the programs take as {@code item_vector} ({@link ItemVectors}). A format-1 answer is refused.
 *
 * <p>This class is the app's one reader of the item-row format (the answer's tensors and which
 * column is which feature): a format change touches it and nothing else.
 */
public final class ItemRows {
    public final int modelVersion;
    public final int tableVersion;
    public final long[] itemCode;
    public final int[][] codes; // [n][columns]
    public final boolean[] known;
    public final float[][] vectors; // [n][d] dequantised item vectors; null when the table serves none

    private ItemRows(int modelVersion, int tableVersion, long[] itemCode, int[][] codes, boolean[] known,
                     float[][] vectors) {
        this.modelVersion = modelVersion;
        this.tableVersion = tableVersion;
        this.itemCode = itemCode;
        this.codes = codes;
        this.known = known;
        this.vectors = vectors;
    }

    /** The format version this reader understands ({@code fedpa.runtime.items.ITEMS_FORMAT_VERSION}). */
    static final int FORMAT_VERSION = 2;

    public int size() {
        return itemCode.length;
    }

    /**
     * Parse a lookup answer body (safetensors: item_code I32, codes U8 [n, C], known U8, and with
     * vector_dim d > 0 vector I8 [n, d], vector_scale F32 [n]).
     */
    public static ItemRows decode(byte[] body) throws PayloadException {
        SafeTensors st = SafeTensors.decode(body);
        String raw = st.metadata().get("fedpa.items");
        int modelVersion;
        int tableVersion;
        int dim;
        try {
            JSONObject meta = new JSONObject(raw == null ? "" : raw);
            int format = meta.optInt("format_version", 1);
            if (format != FORMAT_VERSION) {
                throw new PayloadException("item lookup answer: item-table format_version " + format
                        + (format == 1 ? " carries no item vectors" : " is unknown") + "; this app reads "
                        + FORMAT_VERSION + " (the server must publish a table from `fedpa-export items --student`)");
            }
            modelVersion = meta.getInt("model_version");
            tableVersion = meta.getInt("table_version");
            dim = meta.optInt("vector_dim", 0);
        } catch (JSONException e) {
            throw new PayloadException("item lookup answer: missing or malformed fedpa.items metadata", e);
        }
        Tensor code = st.tensors().get("item_code");
        Tensor cols = st.tensors().get("codes");
        Tensor known = st.tensors().get("known");
        Tensor vector = st.tensors().get("vector");
        Tensor scale = st.tensors().get("vector_scale");
        int expected = dim > 0 ? 5 : 3;
        if (code == null || cols == null || known == null || st.tensors().size() != expected
                || (dim > 0 && (vector == null || scale == null))) {
            throw new PayloadException("item lookup answer must hold item_code, codes and known"
                    + (dim > 0 ? ", vector and vector_scale" : "") + ", got " + st.tensors().keySet());
        }
        int n = code.numel();
        if (cols.rank() != 2 || cols.dim(0) != n || known.numel() != n) {
            throw new PayloadException("item lookup answer: codes " + cols + " and known " + known
                    + " do not fit " + n + " rows");
        }
        float[][] vectors = dim > 0 ? dequantise(vector, scale, n, dim) : null;
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
        return new ItemRows(modelVersion, tableVersion, code.longs().clone(), out, isKnown, vectors);
    }

    /** {@code (float) q * scale} per value: exactly {@code fedpa.runtime.items.dequantise_vectors}. */
    private static float[][] dequantise(Tensor vector, Tensor scale, int n, int dim) throws PayloadException {
        if (!Tensor.I64.equals(vector.dtype()) || !Tensor.F32.equals(scale.dtype())) { // I8 is read widened
            throw new PayloadException("item lookup answer: vector must be int8 and vector_scale F32, got "
                    + vector.dtype() + " and " + scale.dtype());
        }
        if (vector.rank() != 2 || vector.dim(0) != n || vector.dim(1) != dim || scale.numel() != n) {
            throw new PayloadException("item lookup answer: vector " + vector + " and vector_scale " + scale
                    + " do not fit " + n + " rows of dimension " + dim);
        }
        long[] q = vector.longs();
        float[] s = scale.data();
        float[][] out = new float[n][dim];
        for (int i = 0; i < n; i++) {
            if (!(s[i] >= 0) || Float.isInfinite(s[i])) {
                throw new PayloadException("item lookup answer: vector_scale must be finite and >= 0, got " + s[i]);
            }
            for (int j = 0; j < dim; j++) {
                long v = q[i * dim + j];
                if (v < -128 || v > 127) {
                    throw new PayloadException("item lookup answer: vector value " + v + " is not int8");
                }
                out[i][j] = (float) v * s[i];
            }
        }
        return out;
    }

    /** One item's row as the cache keeps it; only this class looks inside (a format change stays here). */
    static final class Row {
        private final long itemCode;
        private final int[] codes;
        private final boolean known;
        private final float[] vector; // null: none served

        private Row(long itemCode, int[] codes, boolean known, float[] vector) {
            this.itemCode = itemCode;
            this.codes = codes;
            this.known = known;
            this.vector = vector;
        }
    }

    /** Row {@code i}, for a cache. */
    Row row(int i) {
        return new Row(itemCode[i], codes[i], known[i], vectors == null ? null : vectors[i]);
    }

    /** Cached rows of one table version as an answer, in the given order. */
    static ItemRows of(int modelVersion, int tableVersion, List<Row> rows) {
        long[] code = new long[rows.size()];
        int[][] codes = new int[rows.size()][];
        boolean[] known = new boolean[rows.size()];
        float[][] vectors = rows.isEmpty() || rows.get(0).vector == null ? null : new float[rows.size()][];
        for (int i = 0; i < code.length; i++) {
            code[i] = rows.get(i).itemCode;
            codes[i] = rows.get(i).codes;
            known[i] = rows.get(i).known;
            if (vectors != null) {
                vectors[i] = rows.get(i).vector;
            }
        }
        return new ItemRows(modelVersion, tableVersion, code, codes, known, vectors);
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
        float[][] vectors = parts.isEmpty() || parts.get(0).vectors == null ? null : new float[n][];
        int k = 0;
        for (ItemRows p : parts) {
            for (int i = 0; i < p.size(); i++, k++) {
                code[k] = p.itemCode[i];
                codes[k] = p.codes[i];
                known[k] = p.known[i];
                if (vectors != null) {
                    vectors[k] = p.vectors[i];
                }
            }
        }
        return parts.isEmpty() ? new ItemRows(0, 0, code, codes, known, null)
                : new ItemRows(parts.get(0).modelVersion, parts.get(0).tableVersion, code, codes, known, vectors);
    }

    /** The schema feature whose code is the answer's int32 {@code item_code} column. */
    static final String ITEM_CODE = "item_code";

    /** One uint8 column of {@code codes}: a feature, or one group value's column of a per-group feature. */
    static final class Column {
        final String feature;
        final String groupAttribute; // null: not per group
        final int groupValue;

        Column(String feature, String groupAttribute, int groupValue) {
            this.feature = feature;
            this.groupAttribute = groupAttribute;
            this.groupValue = groupValue;
        }
    }

    /**
     * The columns of {@code codes} for a bundle, in order ({@code fedpa.runtime.items.expected_columns}):
     * every {@code item_table} feature but {@code item_code} has one column, except a feature taken
     * over a user feature (a group attribute), which has one per value {@code 0 … card-1} of it.
     */
    static List<Column> expectedColumns(Manifest m) {
        Map<String, Integer> userCards = new LinkedHashMap<String, Integer>();
        for (int p : m.positions(Manifest.Feature.USER)) {
            userCards.put(m.features.get(p).name, m.config.cardinalities[p]);
        }
        List<Column> out = new ArrayList<Column>();
        for (int p : m.positions(Manifest.Feature.ITEM_TABLE)) {
            Manifest.Feature f = m.features.get(p);
            if (ITEM_CODE.equals(f.name)) {
                continue;
            }
            Integer card = userCards.get(f.of);
            if (card == null) {
                out.add(new Column(f.name, null, -1));
            } else {
                for (int v = 0; v < card; v++) {
                    out.add(new Column(f.name, f.of, v));
                }
            }
        }
        return out;
    }

    /**
     * Codes for the bundle's {@code item_table} features, per row in the features' column order
     * ({@code ItemRows.columns_for}): a per-group feature takes the column of the device's own value
     * of its attribute ({@code groups}, codes as in the user's features). [n][item_table features]
     */
    public long[][] featureCodes(Manifest m, Map<String, Integer> groups) throws PayloadException {
        List<Column> columns = expectedColumns(m);
        int width = codes.length > 0 ? codes[0].length : columns.size();
        if (width != columns.size()) {
            throw new PayloadException("item table v" + tableVersion + " has " + width + " columns, the bundle's "
                    + "schema needs " + columns.size() + ": the table is for another model version");
        }
        int[] positions = m.positions(Manifest.Feature.ITEM_TABLE);
        int[] source = new int[positions.length]; // column of codes per feature; -1: item_code
        for (int k = 0; k < positions.length; k++) {
            String name = m.features.get(positions[k]).name;
            source[k] = ITEM_CODE.equals(name) ? -1 : column(columns, name, groups);
        }
        long[][] out = new long[size()][positions.length];
        for (int i = 0; i < out.length; i++) {
            for (int k = 0; k < source.length; k++) {
                out[i][k] = source[k] < 0 ? itemCode[i] : codes[i][source[k]];
            }
        }
        return out;
    }

    private int column(List<Column> columns, String feature, Map<String, Integer> groups) throws PayloadException {
        int fallback = -1; // a group value without a column reads the OOV value 0's, as in Python
        for (int j = 0; j < columns.size(); j++) {
            Column c = columns.get(j);
            if (!c.feature.equals(feature)) {
                continue;
            }
            if (c.groupAttribute == null) {
                return j;
            }
            Integer mine = groups.get(c.groupAttribute);
            if (mine == null) {
                throw new PayloadException("feature '" + feature + "' is per value of '" + c.groupAttribute
                        + "', but the device's groups " + groups + " do not name it");
            }
            if (c.groupValue == mine) {
                return j;
            }
            fallback = c.groupValue == 0 ? j : fallback;
        }
        if (fallback < 0) {
            throw new PayloadException("item table v" + tableVersion + " has no column for feature '" + feature + "'");
        }
        return fallback;
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
