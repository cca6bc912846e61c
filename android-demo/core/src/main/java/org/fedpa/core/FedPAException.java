package org.fedpa.core;

/**
 * Base of every error the core raises on purpose (mirrors {@code fedpa.errors.FedPAError}).
 * Messages name the offending value so the app can show them to the user as they are.
 */
public class FedPAException extends Exception {
    public FedPAException(String message) {
        super(message);
    }

    public FedPAException(String message, Throwable cause) {
        super(message, cause);
    }
}
