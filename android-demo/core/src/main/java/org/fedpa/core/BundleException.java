package org.fedpa.core;

/** A bundle file is missing, fails its sha256 check, or the manifest is malformed. */
public class BundleException extends FedPAException {
    public BundleException(String message) {
        super(message);
    }

    public BundleException(String message, Throwable cause) {
        super(message, cause);
    }
}
