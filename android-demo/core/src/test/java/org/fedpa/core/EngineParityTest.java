package org.fedpa.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.Map;
import org.junit.Test;

/** The Java engine against eager torch (tools/make_fixtures.py): forward, gradients, SGD steps. */
public class EngineParityTest {
    private static final double ATOL = 2e-5;
    private static final double RTOL = 1e-4;

    private static final class Case {
        final SafeTensors st;
        final ModelConfig cfg;
        final FrozenWeights frozen;
        final Engine engine;
        final long[] x;
        final float[] y;

        Case(String mode) throws Exception {
            st = Fixtures.read(Fixtures.fixture("engine-" + mode + ".safetensors"));
            cfg = Fixtures.config(st);
            frozen = FrozenWeights.select(Fixtures.prefixed(st, "frozen."), cfg, "fixture");
            engine = new Engine(cfg, frozen);
            x = st.tensors().get("x").longs();
            y = st.tensors().get("y").data();
        }

        Map<String, Tensor> params() {
            return Model.copy(Fixtures.prefixed(st, "param."));
        }
    }

    private void forwardMatches(String mode) throws Exception {
        Case c = new Case(mode);
        float[] logits = c.engine.score(c.x, c.y.length, c.params());
        Fixtures.assertClose(mode + " logits", c.st.tensors().get("logits").data(), logits, ATOL, RTOL);
    }

    private void gradientsMatch(String mode) throws Exception {
        Case c = new Case(mode);
        Trainer.Result r = new Trainer(c.engine, c.frozen).gradients(c.x, c.y, c.y.length, c.params());
        assertEquals(mode + " loss", c.st.tensors().get("loss").data()[0], r.loss, 1e-5);
        Map<String, Tensor> expected = Fixtures.prefixed(c.st, "grad.");
        assertEquals(expected.keySet(), r.gradients.keySet());
        for (Map.Entry<String, Tensor> e : expected.entrySet()) {
            float[] g = r.gradients.get(e.getKey());
            Fixtures.assertClose(mode + " grad " + e.getKey(), e.getValue().data(), g, 1e-6, RTOL);
            double norm = 0;
            for (float v : g) {
                norm += v * v;
            }
            assertTrue(mode + ": gradient of " + e.getKey() + " is exactly zero (dead adapter?)", norm > 0);
        }
    }

    private void sgdStepsMatch(String mode) throws Exception {
        Case c = new Case(mode);
        Map<String, Tensor> p = c.params();
        Trainer trainer = new Trainer(c.engine, c.frozen);
        float lr = c.st.tensors().get("lr").data()[0];
        long steps = c.st.tensors().get("steps").longs()[0];
        for (int i = 0; i < steps; i++) {
            trainer.step(c.x, c.y, c.y.length, p, new ArrayList<String>(p.keySet()), lr);
        }
        for (Map.Entry<String, Tensor> e : Fixtures.prefixed(c.st, "after.").entrySet()) {
            Fixtures.assertClose(mode + " after SGD " + e.getKey(), e.getValue().data(), p.get(e.getKey()).data(), ATOL, RTOL);
        }
        float[] before = Fixtures.prefixed(c.st, "frozen.").get("backbone.embedding.weight").data();
        assertEquals("frozen embedding untouched", before[0], c.frozen.embedding.data()[0], 0f);
    }

    @Test
    public void paperForwardMatchesTorch() throws Exception {
        forwardMatches("paper");
    }

    @Test
    public void residualForwardWithPrivateEmbeddingMatchesTorch() throws Exception {
        forwardMatches("residual");
    }

    @Test
    public void paperGradientsMatchAutograd() throws Exception {
        gradientsMatch("paper");
    }

    @Test
    public void residualGradientsMatchAutograd() throws Exception {
        gradientsMatch("residual");
    }

    @Test
    public void paperSgdStepsMatchTorchOptimizer() throws Exception {
        sgdStepsMatch("paper");
    }

    @Test
    public void residualSgdStepsMatchTorchOptimizer() throws Exception {
        sgdStepsMatch("residual");
    }

    @Test
    public void residualModeWithZeroBEqualsBackbone() throws Exception {
        Case c = new Case("residual");
        Map<String, Tensor> p = c.params();
        for (Map.Entry<String, Tensor> e : p.entrySet()) {
            if (e.getKey().endsWith("lora_B") || e.getKey().equals(Names.USER_EMBEDDING)) {
                java.util.Arrays.fill(e.getValue().data(), 0f);
            }
        }
        float[] adapted = c.engine.score(c.x, c.y.length, p);
        // the plain backbone: relu layers, no adapters
        int n = c.y.length;
        float[] h = new float[0];
        float[] plain = new float[n];
        for (int i = 0; i < n; i++) {
            h = embedRow(c, i);
            for (int l = 0; l < c.cfg.nLayers(); l++) {
                float[] z = Engine.linear(h, 1, c.cfg.layerIn(l), c.frozen.weight[l].data(), c.frozen.bias[l].data(),
                        c.cfg.hidden[l]);
                for (int j = 0; j < z.length; j++) {
                    z[j] = Math.max(z[j], 0f);
                }
                h = z;
            }
            plain[i] = Engine.linear(h, 1, h.length, c.frozen.headWeight.data(), c.frozen.headBias.data(), 1)[0];
        }
        Fixtures.assertClose("residual with B=0 vs backbone", plain, adapted, 1e-6, 1e-6);
        assertFalse(h.length == 0);
    }

    private static float[] embedRow(Case c, int i) {
        int nf = c.cfg.nFeatures();
        int d = c.cfg.embeddingDim;
        float[] out = new float[nf * d];
        int offset = 0;
        for (int f = 0; f < nf; f++) {
            int row = offset + (int) c.x[i * nf + f];
            System.arraycopy(c.frozen.embedding.data(), row * d, out, f * d, d);
            offset += c.cfg.cardinalities[f];
        }
        return out;
    }

    @Test(expected = IllegalArgumentException.class)
    public void outOfRangeCodeIsRefused() throws Exception {
        Case c = new Case("paper");
        long[] x = c.x.clone();
        x[0] = c.cfg.cardinalities[0];
        c.engine.score(x, c.y.length, c.params());
    }
}
