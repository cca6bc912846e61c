package org.fedpa.core;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * The device's history features, a mirror of {@code fedpa.signals.HistoryState}: per history field
 * (an item feature) and value code, the user's own impressions and clicks; for a candidate, its
 * value's count and smoothed click-rate delta (value's rate minus the user's overall rate), each
 * bucketised with the schema's edges. Built from the bundle's {@code feature_schema}; kept on the
 * phone only (the JSON form is the Python one, so a store can be moved between the two).
 *
 * <p>The arithmetic follows the Python expression by expression in double precision, so the codes
 * agree exactly (HistoryStateTest replays Python's golden values).
 */
public final class HistoryState {
    private static final class Column {
        final String name;
        final boolean count; // hist_count (else hist_ctr_delta)
        final int field; // index into fields
        final double[] edges;
        final boolean log1p;

        Column(String name, boolean count, int field, double[] edges, boolean log1p) {
            this.name = name;
            this.count = count;
            this.field = field;
            this.edges = edges;
            this.log1p = log1p;
        }
    }

    private final List<Column> columns = new ArrayList<Column>();
    private final List<String> fields = new ArrayList<String>();
    private final int[] fieldPositions;
    private final int[] columnPositions;
    private final double priorCtr;
    private final double userSmoothing;
    private final double historySmoothing;
    private long total;
    private double totalClicks;
    private final List<Map<Long, double[]>> counts = new ArrayList<Map<Long, double[]>>();

    /** The empty state for a schema's {@code history} columns ({@code feature_schema} of the manifest). */
    public HistoryState(JSONObject featureSchema) throws BundleException {
        try {
            JSONArray feats = featureSchema.getJSONArray("features");
            List<String> names = new ArrayList<String>();
            for (int i = 0; i < feats.length(); i++) {
                names.add(feats.getJSONObject(i).getString("name"));
            }
            List<Integer> positions = new ArrayList<Integer>();
            for (int i = 0; i < feats.length(); i++) {
                JSONObject f = feats.getJSONObject(i);
                if (!"history".equals(f.optString("source"))) {
                    continue;
                }
                String of = f.getString("of");
                if (!fields.contains(of)) {
                    if (!names.contains(of)) {
                        throw new BundleException("history field '" + of + "' is not a feature of the schema");
                    }
                    fields.add(of);
                }
                String signal = f.getString("signal");
                if (!"count".equals(signal) && !"ctr_delta".equals(signal)) {
                    throw new BundleException("history feature '" + f.getString("name") + "' has unknown signal '"
                            + signal + "'");
                }
                JSONArray e = f.getJSONArray("bucket_edges");
                double[] edges = new double[e.length()];
                for (int k = 0; k < edges.length; k++) {
                    edges[k] = e.getDouble(k);
                }
                columns.add(new Column(f.getString("name"), "count".equals(signal), fields.indexOf(of), edges,
                        !"identity".equals(f.optString("bucket_transform", "log1p"))));
                positions.add(i);
            }
            fieldPositions = new int[fields.size()];
            for (int j = 0; j < fields.size(); j++) {
                fieldPositions[j] = names.indexOf(fields.get(j));
                counts.add(new HashMap<Long, double[]>());
            }
            columnPositions = new int[positions.size()];
            for (int k = 0; k < columnPositions.length; k++) {
                columnPositions[k] = positions.get(k);
            }
            JSONObject spec = featureSchema.optJSONObject("signals");
            spec = spec == null ? new JSONObject() : spec;
            priorCtr = spec.optDouble("prior_ctr", 0.5); // fedpa.signals.SignalSpec's defaults
            userSmoothing = spec.optDouble("user_smoothing", 10.0);
            historySmoothing = spec.optDouble("history_smoothing", 5.0);
        } catch (JSONException ex) {
            throw new BundleException("feature_schema: malformed history feature: " + ex.getMessage(), ex);
        }
    }

    /** Columns of {@code x} the history fills, in schema order (empty: the bundle has no history). */
    public int[] positions() {
        return columnPositions.clone();
    }

    public long total() {
        return total;
    }

    /** Add one labelled row (full-width codes as it was scored). */
    public void observe(long[] row, double label) {
        for (int j = 0; j < fieldPositions.length; j++) {
            Long value = row[fieldPositions[j]];
            double[] cell = counts.get(j).get(value);
            if (cell == null) {
                cell = new double[2];
                counts.get(j).put(value, cell);
            }
            cell[0] += 1.0;
            cell[1] += label;
        }
        total += 1;
        totalClicks += label;
    }

    /** The history codes of one candidate row, in {@link #positions()} order (nothing is observed). */
    public long[] codes(long[] row) {
        double userCtr = (totalClicks + userSmoothing * priorCtr) / ((double) total + userSmoothing);
        long[] out = new long[columns.size()];
        for (int k = 0; k < out.length; k++) {
            Column c = columns.get(k);
            double[] cell = counts.get(c.field).get(row[fieldPositions[c.field]]);
            double n = cell == null ? 0.0 : cell[0];
            double clicks = cell == null ? 0.0 : cell[1];
            double v = c.count ? n : (clicks + historySmoothing * userCtr) / (n + historySmoothing) - userCtr;
            out[k] = bucket(v, c);
        }
        return out;
    }

    /** Write this candidate's history codes into its full row. */
    public void fill(long[] row) {
        long[] codes = codes(row);
        for (int k = 0; k < codes.length; k++) {
            row[columnPositions[k]] = codes[k];
        }
    }

    private static long bucket(double v, Column c) {
        if (Double.isNaN(v) || Double.isInfinite(v)) {
            return 0;
        }
        // Counts are whole numbers, so 1 + v is exact and log(1 + v) is log1p(v). Math.log agrees with
        // numpy's log1p bit for bit on the counts 0..1999 (measured; Math.log1p and StrictMath.log1p
        // differ from it in 36 of them), and a count sitting exactly on an edge must land as in Python.
        double s = c.log1p ? Math.log(1.0 + Math.max(v, 0.0)) : v;
        int below = 0; // numpy.searchsorted(edges, s, side="right"): edges <= s
        while (below < c.edges.length && c.edges[below] <= s) {
            below++;
        }
        return below + 1;
    }

    /** The Python {@code HistoryState.to_dict()} form. */
    public JSONObject toJson() {
        try {
            JSONObject o = new JSONObject();
            o.put("fields", new JSONArray(fields));
            o.put("total", total);
            o.put("total_clicks", totalClicks);
            JSONArray tables = new JSONArray();
            for (Map<Long, double[]> t : counts) {
                JSONObject table = new JSONObject();
                for (Map.Entry<Long, double[]> e : new LinkedHashMap<Long, double[]>(t).entrySet()) {
                    table.put(String.valueOf(e.getKey()), new JSONArray().put(e.getValue()[0]).put(e.getValue()[1]));
                }
                tables.put(table);
            }
            o.put("counts", tables);
            return o;
        } catch (JSONException ex) {
            throw new IllegalStateException(ex);
        }
    }

    /** Restore {@link #toJson()} (or Python's {@code to_dict()}); refuses a state kept for other fields. */
    public void load(JSONObject o) throws StoreException {
        try {
            JSONArray f = o.getJSONArray("fields");
            List<String> stored = new ArrayList<String>();
            for (int i = 0; i < f.length(); i++) {
                stored.add(f.getString(i));
            }
            if (!stored.equals(fields)) {
                throw new StoreException("stored history is for fields " + stored + ", the bundle has " + fields
                        + "; rebuild it from the local log");
            }
            total = o.getLong("total");
            totalClicks = o.getDouble("total_clicks");
            JSONArray tables = o.getJSONArray("counts");
            for (int j = 0; j < fields.size(); j++) {
                Map<Long, double[]> t = counts.get(j);
                t.clear();
                JSONObject table = tables.getJSONObject(j);
                Iterator<String> keys = table.keys();
                while (keys.hasNext()) {
                    String k = keys.next();
                    JSONArray cell = table.getJSONArray(k);
                    t.put(Long.parseLong(k), new double[] {cell.getDouble(0), cell.getDouble(1)});
                }
            }
        } catch (JSONException | NumberFormatException ex) {
            throw new StoreException("stored history is malformed: " + ex.getMessage(), ex);
        }
    }
}
