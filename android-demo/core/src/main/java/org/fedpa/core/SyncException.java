package org.fedpa.core;

/**
 * The aggregator refused a request (4xx/5xx, with its error code and detail) or could not be
 * reached ({@link #status()} is 0 then).
 */
public class SyncException extends FedPAException {
    private final int status;
    private final String code;

    public SyncException(int status, String code, String message) {
        super(message);
        this.status = status;
        this.code = code;
    }

    public SyncException(String message, Throwable cause) {
        super(message, cause);
        this.status = 0;
        this.code = "unreachable";
    }

    /** HTTP status, or 0 when the server could not be reached. */
    public int status() {
        return status;
    }

    /** The server's error code ({@code "replayed_nonce"}, ...) or "unreachable"/"http_error". */
    public String code() {
        return code;
    }
}
