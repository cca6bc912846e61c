package org.fedpa.core;

/** An upload would spend more privacy (epsilon) than the device's budget allows. */
public class PrivacyBudgetException extends FedPAException {
    public PrivacyBudgetException(String message) {
        super(message);
    }
}
