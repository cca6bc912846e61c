package org.fedpa.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;

/**
 * The candidate items the feed ranks. The bundle carries the feature encoders but no item
 * table, so the demo draws a seeded catalogue of items whose features are valid codes of the
 * manifest's item features (labels from their vocabularies); a real app would sync its catalogue.
 */
public final class Catalog {
    /** One candidate item: a stable key, a readable title, its item-feature codes. */
    public static final class Item {
        public final String key;
        public final String title;
        public final long[] codes;

        public Item(String key, String title, long[] codes) {
            this.key = key;
            this.title = title;
            this.codes = codes;
        }
    }

    private Catalog() {
    }

    public static List<Item> synthetic(Manifest manifest, int n, long seed) {
        List<Manifest.Feature> items = new ArrayList<Manifest.Feature>();
        int nu = manifest.config.nUserFeatures;
        for (int f = nu; f < manifest.config.nFeatures(); f++) {
            items.add(f < manifest.features.size() ? manifest.features.get(f)
                    : new Manifest.Feature("f" + f, "item", Collections.<String>emptyList(), manifest.config.cardinalities[f]));
        }
        Random rng = new Random(seed);
        List<Item> out = new ArrayList<Item>();
        for (int i = 0; i < n; i++) {
            long[] codes = new long[items.size()];
            StringBuilder title = new StringBuilder();
            for (int j = 0; j < codes.length; j++) {
                int card = manifest.config.cardinalities[nu + j];
                codes[j] = card > 1 ? 1 + rng.nextInt(card - 1) : 0; // skip the OOV code 0
                if (j < 3) {
                    title.append(j == 0 ? "" : " · ").append(items.get(j).name).append('=').append(items.get(j).label(codes[j]));
                }
            }
            out.add(new Item("item-" + i, title.toString(), codes));
        }
        return out;
    }

    /** A seeded user profile: a valid code for every user feature (the settings screen may change it). */
    public static long[] syntheticUser(Manifest manifest, long seed) {
        Random rng = new Random(seed);
        long[] codes = new long[manifest.config.nUserFeatures];
        for (int f = 0; f < codes.length; f++) {
            int card = manifest.config.cardinalities[f];
            codes[f] = card > 1 ? 1 + rng.nextInt(card - 1) : 0;
        }
        return codes;
    }
}
