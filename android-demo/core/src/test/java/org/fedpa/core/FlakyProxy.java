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
 * corrupt a bundle file on its way to the phone. Records upload bodies to prove resends are verbatim.
 */
final class FlakyProxy implements HttpHandler {
    enum Upload { PASS, FAIL_BEFORE, FAIL_AFTER }

    private final String target;
    private final HttpServer server;
    volatile Upload upload = Upload.PASS;
    volatile String tamperFile; // bundle file name whose bytes get one bit flipped
    final List<byte[]> uploads = new ArrayList<byte[]>();

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

    private static void reply(HttpExchange ex, int status, byte[] data) throws IOException {
        ex.sendResponseHeaders(status, data.length == 0 ? -1 : data.length);
        OutputStream o = ex.getResponseBody();
        o.write(data);
        o.close();
    }
}
