package org.fedpa.core;

import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * One labelled impression: the item's id, its item-side codes as the device scored it when the
 * user labelled it (item features, item-table row, history of the earlier interactions), tap (1)
 * or skip (0), when. Training uses these rows as they are, like the Python edge client's log.
 */
public final class Interaction {
    public final String itemKey;
    public final long[] itemCodes; // every column after the user features, in schema order
    public final int label;
    public final long timestamp;

    public Interaction(String itemKey, long[] itemCodes, int label, long timestamp) {
        if (label != 0 && label != 1) {
            throw new IllegalArgumentException("label must be 0 or 1, got " + label);
        }
        this.itemKey = itemKey;
        this.itemCodes = itemCodes.clone();
        this.label = label;
        this.timestamp = timestamp;
    }

    JSONObject toJson() throws JSONException {
        JSONObject o = new JSONObject();
        o.put("item", itemKey);
        JSONArray codes = new JSONArray();
        for (long c : itemCodes) {
            codes.put(c);
        }
        o.put("codes", codes);
        o.put("label", label);
        o.put("ts", timestamp);
        return o;
    }

    static Interaction fromJson(JSONObject o) throws JSONException {
        JSONArray a = o.getJSONArray("codes");
        long[] codes = new long[a.length()];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = a.getLong(i);
        }
        return new Interaction(o.getString("item"), codes, o.getInt("label"), o.getLong("ts"));
    }
}
