package org.fedpa.core;

import java.util.HashMap;
import java.util.Map;

/**
 * The candidates' item vectors by item code ({@code fedpa.runtime.items.CodeVectors}): the
 * embedding of the item-code feature, which the bundle does not ship (item table format 2 serves
 * it per candidate, int8-quantised, dequantised in {@link ItemRows}).
 *
 * <p>Why by code: an item's vector is its item code's row (the OOV row for code 0), the same in
 * every table version of one model version, and rows carry codes. So every lookup teaches the
 * engine the vectors of its codes ({@link #learn}), and a stored interaction trains with the vector
 * it was ranked with. Thread-safe.
 */
public final class ItemVectors {
    private final int dim;
    private final Map<Long, float[]> byCode = new HashMap<Long, float[]>();

    public ItemVectors(int dim) {
        this.dim = dim;
    }

    public int dim() {
        return dim;
    }

    /** Remember the vector of each row's item code. */
    public synchronized void learn(ItemRows rows) throws PayloadException {
        if (rows.vectors == null) {
            throw new PayloadException("item table v" + rows.tableVersion + " serves no item vectors, but this "
                    + "bundle's programs take them (a format-1 table or another model version)");
        }
        for (int i = 0; i < rows.size(); i++) {
            put(rows.itemCode[i], rows.vectors[i]);
        }
    }

    /** Remember one code's vector (e.g. from a golden case: the table's exact values). */
    public synchronized void put(long code, float[] vector) {
        if (vector.length != dim) {
            throw new IllegalArgumentException("item vector of length " + vector.length + ", the model's is " + dim);
        }
        byCode.put(code, vector.clone());
    }

    /** The vector of {@code code}; an IllegalStateException names a code never looked up. */
    public synchronized float[] get(long code) {
        float[] v = byCode.get(code);
        if (v == null) {
            throw new IllegalStateException("no item vector for item code " + code
                    + ": look the item up in the item table first (its row carries the vector)");
        }
        return v;
    }

    /** Whether every code in column {@code column} of the n rows of {@code x} has a vector. */
    public synchronized boolean covers(long[] x, int n, int nf, int column) {
        for (int i = 0; i < n; i++) {
            if (!byCode.containsKey(x[i * nf + column])) {
                return false;
            }
        }
        return true;
    }

    /** The programs' {@code item_vector} input [n, d] row-major for the rows of {@code x}. */
    public float[] rows(long[] x, int n, int nf, int column) {
        float[] out = new float[n * dim];
        for (int i = 0; i < n; i++) {
            System.arraycopy(get(x[i * nf + column]), 0, out, i * dim, dim);
        }
        return out;
    }
}
