package org.fedpa.core;

/** A bundle's privacy settings fall below the device's own policy ({@code fedpa.errors.PrivacyPolicyError}). */
public class PrivacyPolicyException extends FedPAException {
    public PrivacyPolicyException(String message) {
        super(message);
    }
}
