package org.fedpa.core;

import java.util.Arrays;
import java.util.Comparator;

/** Ranking quality on the phone, computed as {@code fedpa.metrics.auc} computes it. */
public final class Metrics {
    private Metrics() {
    }

    /**
     * ROC AUC of {@code scores} for 0/1 {@code labels}, ties counted half (Mann-Whitney with
     * average ranks); NaN if only one class is present. One user's AUC is that user's term of the
     * GAUC the project reports.
     */
    public static double auc(float[] labels, float[] scores) {
        int n = labels.length;
        if (scores.length != n) {
            throw new IllegalArgumentException(n + " labels but " + scores.length + " scores");
        }
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        final float[] s = scores;
        Arrays.sort(order, new Comparator<Integer>() {
            @Override
            public int compare(Integer a, Integer b) {
                return Float.compare(s[a], s[b]);
            }
        });
        double rankSumPos = 0;
        long pos = 0;
        int i = 0;
        while (i < n) {
            int j = i;
            while (j + 1 < n && s[order[j + 1]] == s[order[i]]) {
                j++;
            }
            double avgRank = (i + j) / 2.0 + 1; // 1-based average rank of the tie group
            for (int k = i; k <= j; k++) {
                if (labels[order[k]] > 0.5f) {
                    rankSumPos += avgRank;
                    pos++;
                }
            }
            i = j + 1;
        }
        long neg = n - pos;
        if (pos == 0 || neg == 0) {
            return Double.NaN;
        }
        return (rankSumPos - pos * (pos + 1) / 2.0) / ((double) pos * neg);
    }
}
