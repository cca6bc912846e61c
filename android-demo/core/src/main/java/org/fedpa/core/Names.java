package org.fedpa.core;

/**
 * Parameter names of {@code fedpa.model.FedPARecommender} (what {@code parameter_groups} yields).
 * Branch 0 of a layer is the private user adapter, branch 1+k the k-th grouping attribute's.
 */
public final class Names {
    public static final String USER_EMBEDDING = "user_embedding.delta";

    private Names() {
    }

    public static String loraA(ModelConfig cfg, int layer, int branch) {
        return lora(cfg, layer, branch) + ".lora_A";
    }

    public static String loraB(ModelConfig cfg, int layer, int branch) {
        return lora(cfg, layer, branch) + ".lora_B";
    }

    private static String lora(ModelConfig cfg, int layer, int branch) {
        return branch == 0 ? "layers." + layer + ".user"
                : "layers." + layer + ".groups." + cfg.groupAttributes.get(branch - 1);
    }

    /** Gate tensor {@code w1}, {@code b1}, {@code w2} or {@code b2} of a layer. */
    public static String gate(int layer, String name) {
        return "layers." + layer + ".gate." + name;
    }
}
