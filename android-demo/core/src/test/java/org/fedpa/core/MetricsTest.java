package org.fedpa.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.Random;
import org.junit.Test;

/** The phone's AUC equals {@code fedpa.metrics.auc} (ties counted half), run on the same vectors. */
public class MetricsTest {
    @Test
    public void aucEqualsThePythonMetric() throws Exception {
        Random rng = new Random(7);
        int n = 200;
        float[] y = new float[n];
        float[] s = new float[n];
        StringBuilder ys = new StringBuilder();
        StringBuilder ss = new StringBuilder();
        for (int i = 0; i < n; i++) {
            y[i] = rng.nextInt(3) == 0 ? 1f : 0f;
            s[i] = rng.nextInt(20) / 4f + (y[i] > 0 ? 0.5f : 0f); // many ties
            ys.append(i == 0 ? "" : ",").append((int) y[i]);
            ss.append(i == 0 ? "" : ",").append(s[i]);
        }
        String out = SafeTensorsTest.runPython("import sys\nfrom fedpa.metrics import auc\n"
                + "y, s = sys.argv[1].split(';')\n"
                + "print('AUC %.17g' % auc([int(v) for v in y.split(',')], [float(v) for v in s.split(',')]))\n",
                ys + ";" + ss);
        double python = Double.parseDouble(out.substring(out.lastIndexOf("AUC ") + 4).trim());
        assertEquals(python, Metrics.auc(y, s), 1e-12);
        assertTrue(python > 0.5 && python < 1);
    }

    @Test
    public void edgeCases() {
        assertEquals(1.0, Metrics.auc(new float[] {0, 1}, new float[] {0.1f, 0.9f}), 0);
        assertEquals(0.0, Metrics.auc(new float[] {1, 0}, new float[] {0.1f, 0.9f}), 0);
        assertEquals(0.5, Metrics.auc(new float[] {1, 0}, new float[] {0.3f, 0.3f}), 0);
        assertTrue(Double.isNaN(Metrics.auc(new float[] {1, 1}, new float[] {0.3f, 0.2f})));
    }
}
