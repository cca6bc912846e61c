package org.fedpa.core;

/** The local store cannot be read or written (a corrupt file is named, never deleted). */
public class StoreException extends FedPAException {
    public StoreException(String message) {
        super(message);
    }

    public StoreException(String message, Throwable cause) {
        super(message, cause);
    }
}
