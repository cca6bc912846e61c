package org.fedpa.core;

/**
 * The wire contract's names as this client uses them: the Java copy of {@code fedpa/wire.py}.
 * The Python test {@code tests/fedpa/test_wire.py} reads this file and fails when a value here
 * differs from the Python one, so the two cannot drift apart unnoticed. Error codes are
 * compared for equality with {@link SyncException#code()}, never searched for in messages.
 */
public final class Wire {
    /** The safetensors {@code __metadata__} key of an upload holding its UpdateMeta JSON. */
    public static final String UPDATE_META_KEY = "fedpa.update";
    /** Response header: the shared-state version a download holds. */
    public static final String STATE_VERSION_HEADER = "X-FedPA-State-Version";
    /** Query parameter of a state download: {@code attr:value,attr:*}. */
    public static final String GROUPS_PARAM = "groups";
    /** A group value meaning every value of the attribute. */
    public static final String ALL_VALUES = "*";

    /** 409: this nonce was accepted before; the server already holds the update. */
    public static final String REPLAYED_NONCE = "replayed_nonce";
    /** 409: the update was trained on an old shared state. */
    public static final String STALE_BASE = "stale_base";
    /** 409: the update was made with an old bundle (model version). */
    public static final String MODEL_VERSION_MISMATCH = "model_version_mismatch";
    /** The error code of a refusal whose body was not the server's JSON error shape. */
    public static final String HTTP_ERROR = "http_error";

    private Wire() {
    }
}
