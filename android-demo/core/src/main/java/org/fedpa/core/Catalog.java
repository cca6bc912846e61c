package org.fedpa.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;

/**
 * The candidate items the feed ranks. The bundle carries the feature encoders but no catalogue,
 * so the demo draws a seeded catalogue of items whose features are valid codes of the manifest's
 * item features (the {@code item}-source columns, labels from their vocabularies); a real app would
 * sync its catalogue. The signal columns ({@code item_table}, {@code history}) are not the item's:
 * {@link DeviceSignals} fills them per candidate. The ids are the synthetic dataset's
 * ({@code i00000}, {@code i00001}, …), so an item table computed from it knows the first
 * {@code n_items} of them and the rest rank as unknown items (the table's OOV row).
 */
public final class Catalog {
    /** One candidate item: its raw item id (the item table's key), a readable title, its item-feature codes. */
    public static final class Item {
        public final String key;
        public final String title;
        public final long[] codes; // the item-source features, in schema order

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
        List<Integer> columns = new ArrayList<Integer>();
        int nu = manifest.config.nUserFeatures;
        for (int f = nu; f < manifest.config.nFeatures(); f++) {
            Manifest.Feature feature = f < manifest.features.size() ? manifest.features.get(f)
                    : new Manifest.Feature("f" + f, "item", Collections.<String>emptyList(), manifest.config.cardinalities[f]);
            if (Manifest.Feature.ITEM.equals(feature.source)) { // signal columns come from DeviceSignals
                items.add(feature);
                columns.add(f);
            }
        }
        Random rng = new Random(seed);
        List<Item> out = new ArrayList<Item>();
        for (int i = 0; i < n; i++) {
            long[] codes = new long[items.size()];
            StringBuilder title = new StringBuilder();
            for (int j = 0; j < codes.length; j++) {
                int card = manifest.config.cardinalities[columns.get(j)];
                codes[j] = card > 1 ? 1 + rng.nextInt(card - 1) : 0; // skip the OOV code 0
                if (j < 3) {
                    title.append(j == 0 ? "" : " · ").append(items.get(j).name).append('=').append(items.get(j).label(codes[j]));
                }
            }
            out.add(new Item(String.format(java.util.Locale.ROOT, "i%05d", i), title.toString(), codes));
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
