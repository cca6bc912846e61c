package org.fedpa.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Map;
import org.junit.Test;

/** Frozen weights recovered from an ONNX program exported by export.lower.lower_onnx. */
public class OnnxWeightsTest {
    @Test
    public void initializersEqualTheModelsFrozenTensors() throws Exception {
        SafeTensors ref = Fixtures.read(Fixtures.fixture("model-frozen.safetensors"));
        ModelConfig cfg = Fixtures.config(ref);
        Map<String, Tensor> init = OnnxWeights.read(Bundle.readFile(Fixtures.fixture("model.onnx")));
        FrozenWeights fromOnnx = FrozenWeights.select(init, cfg, "model.onnx");
        FrozenWeights fromTorch = FrozenWeights.select(ref.tensors(), cfg, "state dict");
        assertArrayEquals(fromTorch.embedding.data(), fromOnnx.embedding.data(), 0f);
        for (int l = 0; l < cfg.nLayers(); l++) {
            assertArrayEquals(fromTorch.weight[l].data(), fromOnnx.weight[l].data(), 0f);
            assertArrayEquals(fromTorch.bias[l].data(), fromOnnx.bias[l].data(), 0f);
        }
        assertArrayEquals(fromTorch.headWeight.data(), fromOnnx.headWeight.data(), 0f);
        assertArrayEquals(fromTorch.headBias.data(), fromOnnx.headBias.data(), 0f);
    }

    @Test
    public void truncatedModelIsABundleError() throws Exception {
        byte[] model = Bundle.readFile(Fixtures.fixture("model.onnx"));
        try {
            OnnxWeights.read(java.util.Arrays.copyOf(model, model.length / 2));
            fail("read a truncated model");
        } catch (BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("truncated"));
        }
    }

    @Test
    public void wrongArchitectureIsNamed() throws Exception {
        SafeTensors ref = Fixtures.read(Fixtures.fixture("model-frozen.safetensors"));
        ModelConfig cfg = Fixtures.config(ref);
        ModelConfig wider = new ModelConfig(cfg.cardinalities, cfg.nUserFeatures, cfg.embeddingDim,
                new int[] {cfg.hidden[0] + 1, cfg.hidden[1]}, cfg.groupAttributes, cfg.groupCardinalities, cfg.rank,
                cfg.alpha, cfg.paperGate, cfg.gateHidden, cfg.privateUserEmbeddings);
        try {
            FrozenWeights.select(ref.tensors(), wider, "state dict");
            fail("accepted weights of another architecture");
        } catch (BundleException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("layers.0.weight has shape"));
        }
    }
}
