package org.fedpa.core;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpHandler;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.URL;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A loopback HTTP proxy in front of the real aggregator that misbehaves on demand: drop an
 * upload before the server sees it, lose the server's answer after it stored the upload, or
 * corrupt a bundle file on its way to the phone. Records upload bodies to prove resends are verbatim,
 * and every request body (nothing on the wire may carry the history). For the item table: counts
 * the ids of every lookup, fails the next item requests on demand, and can pretend the server
 * serves a newer table version (the real answer with its {@code table_version} shifted). It can also
 * serve a fixed shared state in place of the server's (with the server's state-version header), so a
 * test that needs a round to train is not at the mercy of the noise other tests' rounds aggregated.
 */
final class FlakyProxy implements HttpHandler {
    enum Upload { PASS, FAIL_BEFORE, FAIL_AFTER }

    private final String target;
    private final HttpServer server;
    volatile Upload upload = Upload.PASS;
    volatile String tamperFile; // bundle file name whose bytes get one bit flipped
    final List<byte[]> uploads = new ArrayList<byte[]>();
    final List<byte[]> bodies = new ArrayList<byte[]>(); // every request body, in order
    final List<Integer> lookups = new ArrayList<Integer>(); // ids per item lookup request
    volatile int itemFailures; // answer this many next item-table requests with itemFailStatus/itemFailBody
    volatile int itemFailStatus = 503;
    volatile String itemFailBody = "{\"error\": \"unavailable\", \"detail\": \"proxy dropped the request\"}";
    volatile int tableVersionShift; // added to the table_version the server reports
    volatile byte[] stateBody; // served as the body of every 200 shared-state answer (the server's headers kept)

    FlakyProxy(String target) throws IOException {
        this.target = target;
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/", this);
        server.start();
    }

    String url() {
        return "http://127.0.0.1:" + server.getAddress().getPort();
    }

    void stop() {
        server.stop(0);
    }

    @Override
    public void handle(HttpExchange ex) throws IOException {
        String path = ex.getRequestURI().toString();
        byte[] body = Bundle.readAll(ex.getRequestBody());
        boolean isUpload = "POST".equals(ex.getRequestMethod()) && path.endsWith("/updates");
        boolean isItems = path.endsWith("/items") || path.endsWith("/items/lookup");
        synchronized (bodies) {
            bodies.add(body);
        }
        if (isItems && path.endsWith("/lookup")) {
            int n;
            try {
                n = new org.json.JSONObject(new String(body, "UTF-8")).getJSONArray("item_ids").length();
            } catch (org.json.JSONException e) {
                n = -1; // not a lookup body: the test sees it
            }
            synchronized (lookups) {
                lookups.add(n);
            }
        }
        if (isItems && itemFailures > 0) {
            itemFailures--;
            reply(ex, itemFailStatus, itemFailBody.getBytes("UTF-8"));
            return;
        }
        if (isUpload) {
            synchronized (uploads) {
                uploads.add(body);
            }
            if (upload == Upload.FAIL_BEFORE) {
                reply(ex, 503, "{\"error\": \"unavailable\", \"detail\": \"proxy dropped the upload\"}".getBytes("UTF-8"));
                return;
            }
        }
        HttpURLConnection c = (HttpURLConnection) new URL(target + path).openConnection();
        c.setRequestMethod(ex.getRequestMethod());
        for (Map.Entry<String, List<String>> h : ex.getRequestHeaders().entrySet()) {
            if (!h.getKey().equalsIgnoreCase("Host") && !h.getKey().equalsIgnoreCase("Content-length")) {
                c.setRequestProperty(h.getKey(), h.getValue().get(0));
            }
        }
        if (body.length > 0) {
            c.setDoOutput(true);
            OutputStream o = c.getOutputStream();
            o.write(body);
            o.close();
        }
        int status = c.getResponseCode();
        InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
        byte[] answer = in == null ? new byte[0] : Bundle.readAll(in);
        if (isUpload && upload == Upload.FAIL_AFTER) {
            reply(ex, 502, "{\"error\": \"bad_gateway\", \"detail\": \"proxy lost the answer\"}".getBytes("UTF-8"));
            return;
        }
        if (isItems && status == 200 && tableVersionShift != 0) {
            answer = shiftTableVersion(answer, path.endsWith("/lookup"));
        }
        if (stateBody != null && status == 200 && path.contains("/state?")) {
            answer = stateBody.clone();
        }
        if (tamperFile != null && path.endsWith("/files/" + tamperFile) && answer.length > 10) {
            answer[answer.length / 2] ^= 1;
        }
        for (Map.Entry<String, List<String>> h : c.getHeaderFields().entrySet()) {
            String name = String.valueOf(h.getKey()).toLowerCase(java.util.Locale.ROOT);
            if (name.startsWith("x-fedpa") || name.equals("etag")) {
                ex.getResponseHeaders().add(h.getKey(), h.getValue().get(0));
            }
        }
        reply(ex, status, answer);
    }

    /** The same answer as if the server served table version {@code table_version + tableVersionShift}. */
    private byte[] shiftTableVersion(byte[] answer, boolean lookup) throws IOException {
        try {
            if (!lookup) {
                org.json.JSONObject o = new org.json.JSONObject(new String(answer, "UTF-8"));
                o.put("table_version", o.getInt("table_version") + tableVersionShift);
                return o.toString().getBytes("UTF-8");
            }
            SafeTensors st = SafeTensors.decode(answer); // integers come back widened to I64, which ItemRows reads
            Map<String, String> meta = new java.util.LinkedHashMap<String, String>(st.metadata());
            org.json.JSONObject items = new org.json.JSONObject(meta.get("fedpa.items"));
            items.put("table_version", items.getInt("table_version") + tableVersionShift);
            meta.put("fedpa.items", items.toString());
            return SafeTensors.encode(st.tensors(), meta);
        } catch (org.json.JSONException | PayloadException e) {
            throw new IOException("cannot rewrite the item answer: " + e.getMessage(), e);
        }
    }

    private static void reply(HttpExchange ex, int status, byte[] data) throws IOException {
        ex.sendResponseHeaders(status, data.length == 0 ? -1 : data.length);
        OutputStream o = ex.getResponseBody();
        o.write(data);
        o.close();
    }
}
