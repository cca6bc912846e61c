package org.fedpa.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import org.junit.Test;

/** HTTPS by default; plain HTTP only to a loopback/emulator host and only with the debug setting. */
public class ServerPolicyTest {
    private static void refused(String url, boolean debug, String reason) {
        try {
            ServerPolicy.check(url, debug);
            fail(url + " (debug " + debug + ") should be refused");
        } catch (SyncException e) {
            assertEquals("bad_url", e.code());
            assertTrue(e.getMessage(), e.getMessage().contains(reason));
        }
    }

    @Test
    public void httpsIsAlwaysAllowed() throws Exception {
        assertEquals("https://fedpa.example.org", ServerPolicy.check(" https://fedpa.example.org ", false));
        assertEquals("https://10.0.2.2:8443", ServerPolicy.check("https://10.0.2.2:8443", false));
    }

    @Test
    public void plainHttpOnlyToLoopbackOrEmulatorHostWithTheDebugSetting() throws Exception {
        for (String url : new String[] {"http://10.0.2.2:8000", "http://127.0.0.1:8000", "http://localhost:8000"}) {
            assertEquals(url, ServerPolicy.check(url, true));
            refused(url, false, "debug setting");
        }
        refused("http://192.168.1.20:8000", true, "plain HTTP to 192.168.1.20 is not allowed: use https://192.168.1.20:8000");
        refused("http://fedpa.example.org", true, "not allowed");
        refused("http://127.0.0.1.evil.example:80", true, "not allowed");
        refused("http://10.0.2.22:8000", true, "not allowed");
        refused("ftp://fedpa.example.org", true, "must start with https://");
        refused("", true, "must start with https://");
        refused("https://", false, "has no host");
    }

    @Test
    public void theApiClientNeverTalksPlainHttpToAnotherMachine() throws Exception {
        new ApiClient("http://127.0.0.1:9", null, 1000); // loopback: allowed (the app adds the debug switch)
        try {
            new ApiClient("http://192.168.1.20:8000", null, 1000);
            fail("plain HTTP to a LAN host must be refused");
        } catch (SyncException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("use https://"));
        }
    }
}
