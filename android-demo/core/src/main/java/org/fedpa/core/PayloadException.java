package org.fedpa.core;

/** A safetensors payload is corrupt, or has wrong names, shapes, dtypes or values. */
public class PayloadException extends FedPAException {
    public PayloadException(String message) {
        super(message);
    }

    public PayloadException(String message, Throwable cause) {
        super(message, cause);
    }
}
