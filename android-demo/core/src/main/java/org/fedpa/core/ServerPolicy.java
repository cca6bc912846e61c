package org.fedpa.core;

import java.net.MalformedURLException;
import java.net.URL;
import java.util.Locale;

/**
 * Which aggregator URLs a phone may talk to. HTTPS always; plain HTTP never to another machine
 * (tokens, the manifest and LDP updates would cross the network readable and forgeable), only to
 * this device's own loopback or the emulator's alias of the host computer, and only when the user
 * turned on the app's explicit debug setting. {@link ApiClient} enforces the host rule on every
 * connection; the app adds the debug switch.
 */
public final class ServerPolicy {
    private ServerPolicy() {
    }

    /**
     * The URL if allowed, else a {@link SyncException} ("bad_url") whose message says what to do.
     *
     * @param allowPlainHttp the app's debug setting "allow plain HTTP to this computer / emulator host"
     */
    public static String check(String url, boolean allowPlainHttp) throws SyncException {
        String u = url == null ? "" : url.trim();
        String lower = u.toLowerCase(Locale.ROOT);
        if (lower.startsWith("https://")) {
            host(u); // well-formed
            return u;
        }
        if (!lower.startsWith("http://")) {
            throw new SyncException(0, "bad_url", "the server URL must start with https:// (got '" + u + "')");
        }
        String host = host(u);
        if (!isLoopbackOrEmulatorHost(host)) {
            throw new SyncException(0, "bad_url", "plain HTTP to " + host + " is not allowed: use https://"
                    + u.substring("http://".length()) + " (plain HTTP is only for a server on this device or, from the "
                    + "emulator, on its host computer at 10.0.2.2, with the debug setting on)");
        }
        if (!allowPlainHttp) {
            throw new SyncException(0, "bad_url", "plain HTTP to " + host + " needs the debug setting \"Allow plain "
                    + "HTTP to this computer\" in Settings; otherwise use https://");
        }
        return u;
    }

    /**
     * localhost, 127.0.0.1, or 10.0.2.2 (the Android emulator's address of the host computer's
     * loopback): the same list as the debug build's app/src/debug/res/xml/network_security_config.xml.
     */
    public static boolean isLoopbackOrEmulatorHost(String host) {
        String h = host.toLowerCase(Locale.ROOT);
        return "localhost".equals(h) || "127.0.0.1".equals(h) || "10.0.2.2".equals(h);
    }

    private static String host(String u) throws SyncException {
        try {
            String host = new URL(u).getHost();
            if (host == null || host.isEmpty()) {
                throw new SyncException(0, "bad_url", "the server URL '" + u + "' has no host");
            }
            return host;
        } catch (MalformedURLException e) {
            throw new SyncException(0, "bad_url", "the server URL '" + u + "' is not valid: " + e.getMessage());
        }
    }
}
