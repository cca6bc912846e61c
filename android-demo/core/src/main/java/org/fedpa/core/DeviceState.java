package org.fedpa.core;

import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/** The device's small mutable record ({@code state.json}); the commit record of the store. */
public final class DeviceState {
    public String serverUrl = "";
    public String modelId = "";
    public String deviceId;
    public String token;
    public int modelVersion;
    public long[] userCodes; // the local user's feature codes (first n_user_features columns)
    public int roundsCompleted; // uploads the server accepted
    public int uploadsCharged; // uploads whose noise was drawn (epsilon is charged here, once)
    public double epsilonSpent;
    public int lastStateVersion = -1;
    public int refused;
    // an upload that was built (noised, epsilon charged) but not yet acknowledged
    public String pendingNonce;
    public int pendingBaseVersion;
    public int pendingExamples;
    // one entry per upload that left the device, what it applied (never a server's claim); survives
    // bundle installs and model versions: a new bundle does not give privacy back
    public final java.util.List<Accountant.Upload> ledger = new java.util.ArrayList<Accountant.Upload>();

    /** The accountant's view: the ledger, plus un-noised entries for uploads from before the ledger existed. */
    public java.util.List<Accountant.Upload> uploads() {
        java.util.List<Accountant.Upload> out = new java.util.ArrayList<Accountant.Upload>(ledger);
        for (int i = ledger.size(); i < uploadsCharged; i++) {
            out.add(new Accountant.Upload("none", 0.0, Double.MAX_VALUE));
        }
        return out;
    }

    public JSONObject toJson() throws JSONException {
        JSONObject o = new JSONObject();
        o.put("format", 1);
        o.put("server_url", serverUrl);
        o.put("model_id", modelId);
        o.put("device_id", deviceId == null ? JSONObject.NULL : deviceId);
        o.put("token", token == null ? JSONObject.NULL : token);
        o.put("model_version", modelVersion);
        JSONArray codes = new JSONArray();
        if (userCodes != null) {
            for (long c : userCodes) {
                codes.put(c);
            }
        }
        o.put("user_codes", userCodes == null ? JSONObject.NULL : codes);
        o.put("rounds_completed", roundsCompleted);
        o.put("uploads_charged", uploadsCharged);
        o.put("epsilon_spent", epsilonSpent);
        o.put("last_state_version", lastStateVersion);
        o.put("refused", refused);
        JSONArray l = new JSONArray();
        for (Accountant.Upload u : ledger) {
            l.put(new JSONObject().put("mechanism", u.mechanism).put("noise_multiplier", u.noiseMultiplier)
                    .put("clip_norm", u.clipNorm));
        }
        o.put("ledger", l);
        if (pendingNonce != null) {
            JSONObject p = new JSONObject();
            p.put("nonce", pendingNonce);
            p.put("base_version", pendingBaseVersion);
            p.put("example_count", pendingExamples);
            o.put("pending", p);
        }
        return o;
    }

    public static DeviceState fromJson(JSONObject o) throws JSONException {
        DeviceState s = new DeviceState();
        s.serverUrl = o.optString("server_url", "");
        s.modelId = o.optString("model_id", "");
        s.deviceId = o.isNull("device_id") ? null : o.getString("device_id");
        s.token = o.isNull("token") ? null : o.getString("token");
        s.modelVersion = o.optInt("model_version", 0);
        JSONArray codes = o.optJSONArray("user_codes");
        if (codes != null) {
            s.userCodes = new long[codes.length()];
            for (int i = 0; i < codes.length(); i++) {
                s.userCodes[i] = codes.getLong(i);
            }
        }
        s.roundsCompleted = o.optInt("rounds_completed", 0);
        s.uploadsCharged = o.optInt("uploads_charged", 0);
        s.epsilonSpent = o.optDouble("epsilon_spent", 0.0);
        s.lastStateVersion = o.optInt("last_state_version", -1);
        s.refused = o.optInt("refused", 0);
        JSONArray l = o.optJSONArray("ledger");
        for (int i = 0; l != null && i < l.length(); i++) {
            JSONObject u = l.getJSONObject(i);
            s.ledger.add(new Accountant.Upload(u.getString("mechanism"), u.getDouble("noise_multiplier"),
                    u.getDouble("clip_norm")));
        }
        JSONObject p = o.optJSONObject("pending");
        if (p != null) {
            s.pendingNonce = p.getString("nonce");
            s.pendingBaseVersion = p.getInt("base_version");
            s.pendingExamples = p.getInt("example_count");
        }
        return s;
    }
}
