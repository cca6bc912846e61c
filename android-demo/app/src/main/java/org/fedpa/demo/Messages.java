package org.fedpa.demo;

import org.fedpa.core.BundleException;
import org.fedpa.core.ItemTableClient;
import org.fedpa.core.PrivacyBudgetException;
import org.fedpa.core.PrivacyPolicyException;
import org.fedpa.core.StoreException;
import org.fedpa.core.SyncException;

/** Errors as sentences for the user; the core's messages already name the offending value. */
final class Messages {
    private Messages() {
    }

    static String describe(Exception e) {
        if (e instanceof SyncException) {
            SyncException s = (SyncException) e;
            String m = s.getMessage();
            if (m != null && m.startsWith(ItemTableClient.FAILED)) { // ranking needs the candidates' item-table rows
                return "Cannot rank the feed: this model needs each item's row of the server's item table, and the "
                        + "lookup failed (" + (s.status() == 0 ? "server unreachable" : s.status() + " " + s.code())
                        + "). Your taps and your personal adapter are safe on this phone; rows already fetched are "
                        + "reused once the server answers again.\n" + m;
            }
            if (s.status() == 0) {
                return "Server unreachable. Your taps and your personal adapter are safe on this phone; "
                        + "check the server URL in Settings and try again.\n" + s.getMessage();
            }
            if (s.status() == 401 || s.status() == 403) {
                return "The server refused this device's token (" + s.status() + "). Re-save Settings to register again.\n"
                        + s.getMessage();
            }
            if (s.status() == 404) {
                return "The server does not know this model (404). Check the model id in Settings.\n" + s.getMessage();
            }
            return "The server refused the request (" + s.status() + " " + s.code() + "). Nothing was lost locally.\n"
                    + s.getMessage();
        }
        if (e instanceof BundleException) {
            String m = e.getMessage();
            if (m != null && m.startsWith("no publisher key pinned")) {
                return "Not synced: " + m + ".";
            }
            return m != null && m.startsWith("no model on this device") ? "Welcome: " + m + "." : "Model check failed: " + m;
        }
        if (e instanceof StoreException) {
            return "Local data problem: " + e.getMessage() + "\n(Settings → Reset moves the local data aside.)";
        }
        if (e instanceof PrivacyPolicyException) {
            return "Model refused by this device's privacy policy: " + e.getMessage() + ". The current model is kept; "
                    + "nothing was uploaded.";
        }
        if (e instanceof PrivacyBudgetException) {
            return "Privacy budget reached: " + e.getMessage() + ". Nothing was trained or uploaded.";
        }
        return e.getClass().getSimpleName() + ": " + e.getMessage();
    }
}
