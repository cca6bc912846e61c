package org.fedpa.core;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.net.URLEncoder;
import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * The aggregator's REST API (docs/api.md) over HttpURLConnection + org.json. A 4xx/5xx becomes a
 * {@link SyncException} carrying the server's {@code error} code and {@code detail}; a network
 * failure becomes one with status 0 that names the URL. No retries here: the app retries a whole
 * sync when the user asks, and a pending upload is resent verbatim.
 */
public final class ApiClient {
    private static final Charset UTF8 = Charset.forName("UTF-8");

    private final String baseUrl;
    private final int timeoutMs;
    private String token;
    private long bytesDown;
    private long bytesUp;

    public ApiClient(String baseUrl, String token, int timeoutMs) throws SyncException {
        String url = baseUrl == null ? "" : baseUrl.trim();
        while (url.endsWith("/")) {
            url = url.substring(0, url.length() - 1);
        }
        // HTTPS, or plain HTTP to a loopback/emulator host only; the app's debug switch is checked
        // before a client is made (ServerPolicy.check(url, setting)).
        this.baseUrl = ServerPolicy.check(url, true);
        this.token = token;
        this.timeoutMs = timeoutMs;
    }

    public String baseUrl() {
        return baseUrl;
    }

    public void setToken(String token) {
        this.token = token;
    }

    public long bytesDown() {
        return bytesDown;
    }

    public long bytesUp() {
        return bytesUp;
    }

    /** An HTTP answer: status, body, and the headers FedPA uses. */
    public static final class Response {
        public final int status;
        public final byte[] body;
        private final HttpURLConnection conn;

        Response(int status, byte[] body, HttpURLConnection conn) {
            this.status = status;
            this.body = body;
            this.conn = conn;
        }

        public String header(String name) {
            return conn.getHeaderField(name);
        }

        public JSONObject json() throws SyncException {
            try {
                return new JSONObject(new String(body, UTF8));
            } catch (JSONException e) {
                throw new SyncException(status, "bad_response", "server answered " + status + " with non-JSON body");
            }
        }
    }

    public JSONObject health() throws SyncException {
        return request("GET", "/healthz", null, null, null).json();
    }

    /** POST /v1/devices → {device_id, token}; the token is kept for later calls. */
    public JSONObject register(String modelId) throws SyncException {
        JSONObject body = new JSONObject();
        try {
            body.put("model_id", modelId);
        } catch (JSONException e) {
            throw new IllegalStateException(e);
        }
        JSONObject out = request("POST", "/v1/devices", body.toString().getBytes(UTF8), "application/json", null).json();
        token = out.optString("token", null);
        if (token == null || out.optString("device_id", null) == null) {
            throw new SyncException(201, "bad_response", "registration answer lacks device_id or token: " + out);
        }
        return out;
    }

    /** GET /v1/models/{id}: the current manifest as raw JSON text. */
    public String manifest(String modelId) throws SyncException {
        return new String(request("GET", "/v1/models/" + enc(modelId), null, null, null).body, UTF8);
    }

    /** GET /v1/models/{id}: the current manifest byte for byte (what the publisher's signature covers). */
    public byte[] manifestBytes(String modelId) throws SyncException {
        return request("GET", "/v1/models/" + enc(modelId), null, null, null).body;
    }

    public byte[] file(String modelId, String name) throws SyncException {
        return request("GET", "/v1/models/" + enc(modelId) + "/files/" + enc(name), null, null, null).body;
    }

    /** The bundle's manifest.sig as published, or null when the model was published unsigned (404). */
    public byte[] signature(String modelId) throws SyncException {
        try {
            return file(modelId, Signatures.FILE);
        } catch (SyncException e) {
            if (e.status() == 404) {
                return null;
            }
            throw e;
        }
    }

    /** GET the whole shared bank ({@code attr:*} for every attribute): the request names none of the user's groups. */
    public Response stateAll(String modelId, java.util.Collection<String> attributes, String etag) throws SyncException {
        StringBuilder q = new StringBuilder();
        for (String a : attributes) {
            q.append(q.length() == 0 ? "" : ",").append(a).append(':').append(Wire.ALL_VALUES);
        }
        return request("GET", "/v1/models/" + enc(modelId) + "/state?" + Wire.GROUPS_PARAM + "=" + enc(q.toString()), null, null,
                etag);
    }

    /** GET state for these groups; status 304 (body empty) when {@code etag} still matches. */
    public Response state(String modelId, Map<String, Integer> groups, String etag) throws SyncException {
        StringBuilder q = new StringBuilder();
        for (Map.Entry<String, Integer> g : groups.entrySet()) {
            q.append(q.length() == 0 ? "" : ",").append(g.getKey()).append(':').append(g.getValue());
        }
        return request("GET", "/v1/models/" + enc(modelId) + "/state?" + Wire.GROUPS_PARAM + "=" + enc(q.toString()), null, null,
                etag);
    }

    /** POST one update (safetensors with fedpa.update metadata) → the 202 receipt. */
    public JSONObject upload(String modelId, byte[] body) throws SyncException {
        return request("POST", "/v1/models/" + enc(modelId) + "/updates", body, "application/octet-stream", null).json();
    }

    /** GET /v1/models/{id}/items: the item table served now (table_version, columns, max_lookup_batch). */
    public JSONObject itemTable(String modelId) throws SyncException {
        return request("GET", "/v1/models/" + enc(modelId) + "/items", null, null, null).json();
    }

    /**
     * POST /v1/models/{id}/items/lookup for at most {@code maxBatch} ids per request (the server's
     * {@code max_lookup_batch}); the answers are joined in order. Unknown ids come back with
     * {@code known == false}, never as an error.
     */
    public ItemRows lookupItems(String modelId, List<String> itemIds, int maxBatch) throws SyncException {
        if (maxBatch < 1) {
            throw new IllegalArgumentException("maxBatch must be >= 1, got " + maxBatch);
        }
        List<ItemRows> parts = new ArrayList<ItemRows>();
        for (int start = 0; start < itemIds.size(); start += maxBatch) {
            List<String> part = itemIds.subList(start, Math.min(itemIds.size(), start + maxBatch));
            byte[] body = request("POST", "/v1/models/" + enc(modelId) + "/items/lookup", ItemRows.request(part),
                    "application/json", null).body;
            try {
                parts.add(ItemRows.decode(body));
            } catch (PayloadException e) {
                throw new SyncException(200, "bad_response", "item lookup answer: " + e.getMessage());
            }
        }
        return ItemRows.join(parts);
    }

    public JSONObject status(String modelId) throws SyncException {
        return request("GET", "/v1/models/" + enc(modelId) + "/status", null, null, null).json();
    }

    private static String enc(String s) {
        try {
            return URLEncoder.encode(s, "UTF-8").replace("+", "%20");
        } catch (java.io.UnsupportedEncodingException e) {
            throw new IllegalStateException(e);
        }
    }

    Response request(String method, String path, byte[] body, String contentType, String etag) throws SyncException {
        String url = baseUrl + path;
        HttpURLConnection conn;
        try {
            conn = (HttpURLConnection) new URL(url).openConnection();
            conn.setConnectTimeout(timeoutMs);
            conn.setReadTimeout(timeoutMs);
            conn.setRequestMethod(method);
            conn.setUseCaches(false);
            conn.setRequestProperty("Accept", "application/json, application/octet-stream");
            if (token != null) {
                conn.setRequestProperty("Authorization", "Bearer " + token);
            }
            if (etag != null) {
                conn.setRequestProperty("If-None-Match", etag);
            }
            if (body != null) {
                conn.setDoOutput(true);
                conn.setRequestProperty("Content-Type", contentType);
                conn.setFixedLengthStreamingMode(body.length);
                OutputStream out = conn.getOutputStream();
                try {
                    out.write(body);
                } finally {
                    out.close();
                }
                bytesUp += body.length;
            }
            int status = conn.getResponseCode();
            InputStream in = status >= 400 ? conn.getErrorStream() : status == 304 ? null : conn.getInputStream();
            byte[] data = new byte[0];
            if (in != null) {
                try {
                    data = Bundle.readAll(in);
                } finally {
                    in.close();
                }
            }
            bytesDown += data.length;
            if (status >= 400) {
                throw refusal(method, url, status, data);
            }
            return new Response(status, data, conn);
        } catch (IOException e) {
            throw new SyncException("cannot reach the server at " + baseUrl + " (" + method + " " + path + "): "
                    + e.getClass().getSimpleName() + (e.getMessage() == null ? "" : ": " + e.getMessage()), e);
        }
    }

    private static SyncException refusal(String method, String url, int status, byte[] data) {
        String code = Wire.HTTP_ERROR;
        String detail = new String(data, UTF8);
        try {
            JSONObject o = new JSONObject(detail);
            code = o.optString("error", code);
            Object d = o.opt("detail");
            detail = d == null ? detail : d.toString();
        } catch (JSONException e) {
            if (detail.length() > 300) {
                detail = detail.substring(0, 300) + "...";
            }
        }
        return new SyncException(status, code, method + " " + url + " refused with " + status + " " + code + ": " + detail);
    }
}
