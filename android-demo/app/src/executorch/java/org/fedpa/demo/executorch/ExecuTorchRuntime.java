package org.fedpa.demo.executorch;

import java.io.Closeable;
import java.nio.Buffer;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.fedpa.core.Bundle;
import org.fedpa.core.BundleException;
import org.fedpa.core.Engine;
import org.fedpa.core.FedPAException;
import org.fedpa.core.FrozenWeights;
import org.fedpa.core.ItemVectors;
import org.fedpa.core.ModelRuntime;
import org.fedpa.core.StepGuard;
import org.json.JSONArray;
import org.json.JSONObject;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;
import org.pytorch.executorch.training.SGD;
import org.pytorch.executorch.training.TrainingModule;

/**
 * The bundle's ExecuTorch programs on the phone (Gradle build only; NOT compiled by build-apk.sh,
 * which has no ExecuTorch AAR; test.sh compile-checks it against tools/executorch-stub, the
 * ExecuTorch 1.4.1 Java API it uses). Both programs also take the frozen backbone and head as
 * inputs (the manifest's {@code "frozen"} group, {@code backbone.safetensors}): they are wrapped
 * as ExecuTorch tensors once here and passed to every call. Inference: {@code inference.pte} with
 * x (and, when the manifest has item_vectors, the candidates' {@code item_vector} from the engine's
 * {@link ItemVectors}), the personalisation tensors and the frozen ones as inputs, in the
 * manifest's input order, split into chunks of its max_batch. Training: {@code training.pte} takes
 * (x, y, [item_vector,] frozen…) and holds the personalisation tensors as its parameters;
 * each step writes our current values into them, runs forward+backward, and applies ExecuTorch's
 * SGD only when the loss and every gradient are finite ({@link StepGuard}), then reads them back.
 * Used only after {@link org.fedpa.core.VerifiedRuntimeFactory} has replayed the bundle's golden
 * vectors through it.
 */
final class ExecuTorchRuntime implements ModelRuntime, Closeable {
    private static final String METHOD = "forward";
    private static final String ITEM_VECTOR = "item_vector"; // the manifest's per-candidate input

    private final Module inference;
    private final TrainingModule training;
    private final List<String> inputNames = new ArrayList<String>(); // personalisation inputs, in order
    private final List<EValue> frozenInference = new ArrayList<EValue>(); // after them, in the program's order
    private final List<EValue> frozenTraining = new ArrayList<EValue>(); // after (x, y)
    private final int maxBatch;
    private final int nFeatures;
    private final ItemVectors itemVectors; // null: the programs embed the item code themselves
    private final int itemColumn;
    private Map<String, Tensor> live; // the training program's own parameter tensors
    private SGD sgd;
    private float sgdLr = Float.NaN;

    ExecuTorchRuntime(Bundle bundle, Engine engine) throws FedPAException {
        itemVectors = engine.itemVectors();
        itemColumn = engine.config().itemColumn;
        FrozenWeights frozen = engine.frozen();
        try {
            JSONObject programs = bundle.manifest().programs;
            JSONObject inf = programs.getJSONObject("inference");
            JSONArray inputs = inf.getJSONArray("inputs");
            for (int i = 1; i < inputs.length(); i++) { // input 0 is x
                JSONObject in = inputs.getJSONObject(i);
                if (!"frozen".equals(in.optString("group"))) {
                    inputNames.add(in.getString("name"));
                }
            }
            maxBatch = inf.optInt("max_batch", 1024);
            nFeatures = bundle.manifest().config.nFeatures();
            inference = Module.load(bundle.file(inf.getString("file")).getAbsolutePath());
            training = TrainingModule.load(bundle.file(programs.getJSONObject("training").getString("file")).getAbsolutePath());
            // after loading: a phone without the native library fails there, with its own notice
            for (String name : FrozenWeights.declared(bundle.manifest(), "inference").keySet()) {
                frozenInference.add(frozenValue(frozen, name));
            }
            for (String name : FrozenWeights.declared(bundle.manifest(), "training").keySet()) {
                frozenTraining.add(frozenValue(frozen, name));
            }
        } catch (Exception e) {
            throw new BundleException("cannot load the ExecuTorch programs: " + e.getMessage(), e);
        }
    }

    private static EValue frozenValue(FrozenWeights frozen, String name) throws BundleException {
        org.fedpa.core.Tensor t = frozen.byName.get(name);
        if (t == null) {
            throw new BundleException("backbone.safetensors has no frozen input '" + name + "'");
        }
        return EValue.from(Tensor.fromBlob(t.data(), longs(t.shape())));
    }

    @Override
    public String name() {
        return "ExecuTorch";
    }

    @Override
    public float[] score(long[] x, int n, Map<String, org.fedpa.core.Tensor> params) {
        float[] out = new float[n];
        EValue[] args = new EValue[1 + inputNames.size() + frozenInference.size()];
        int vectorArg = -1;
        for (int i = 0; i < inputNames.size(); i++) {
            if (ITEM_VECTOR.equals(inputNames.get(i))) {
                vectorArg = 1 + i; // per chunk, below
                continue;
            }
            org.fedpa.core.Tensor t = params.get(inputNames.get(i));
            args[1 + i] = EValue.from(Tensor.fromBlob(t.data(), longs(t.shape())));
        }
        for (int i = 0; i < frozenInference.size(); i++) {
            args[1 + inputNames.size() + i] = frozenInference.get(i);
        }
        for (int start = 0; start < n; start += maxBatch) {
            int b = Math.min(maxBatch, n - start);
            long[] chunk = new long[b * nFeatures];
            System.arraycopy(x, start * nFeatures, chunk, 0, chunk.length);
            args[0] = EValue.from(Tensor.fromBlob(chunk, new long[] {b, nFeatures}));
            if (vectorArg > 0) {
                args[vectorArg] = EValue.from(Tensor.fromBlob(itemVectors.rows(chunk, b, nFeatures, itemColumn),
                        new long[] {b, itemVectors.dim()}));
            }
            float[] logits = inference.forward(args)[0].toTensor().getDataAsFloatArray();
            System.arraycopy(logits, 0, out, start, b);
        }
        return out;
    }

    @Override
    public float step(long[] x, float[] y, int n, Map<String, org.fedpa.core.Tensor> params, float lr)
            throws FedPAException {
        if (live == null) {
            live = training.namedParameters(METHOD);
        }
        if (sgd == null || sgdLr != lr) { // plain SGD is stateless: one optimiser per learning rate
            sgd = SGD.create(live, (double) lr);
            sgdLr = lr;
        }
        for (Map.Entry<String, Tensor> e : live.entrySet()) {
            org.fedpa.core.Tensor mine = params.get(e.getKey());
            if (mine == null) {
                throw new BundleException("training.pte trains '" + e.getKey() + "', which is not a personalisation tensor");
            }
            // namedParameters() wraps the program's own memory (a direct buffer over the native
            // tensor, jni_layer.cpp newJTensorFromTensor); Tensor.getRawDataBuffer() is public in 1.4.1.
            Buffer raw = e.getValue().getRawDataBuffer();
            if (!(raw instanceof FloatBuffer) || raw.capacity() != mine.data().length) {
                throw new BundleException("training.pte parameter '" + e.getKey() + "' is not a float32 tensor of "
                        + mine.data().length + " values");
            }
            FloatBuffer buf = (FloatBuffer) raw;
            buf.rewind();
            buf.put(mine.data());
        }
        List<EValue> args = new ArrayList<EValue>();
        args.add(EValue.from(Tensor.fromBlob(x, new long[] {n, nFeatures})));
        args.add(EValue.from(Tensor.fromBlob(y, new long[] {n})));
        if (itemVectors != null) {
            args.add(EValue.from(Tensor.fromBlob(itemVectors.rows(x, n, nFeatures, itemColumn),
                    new long[] {n, itemVectors.dim()})));
        }
        args.addAll(frozenTraining);
        EValue[] out = training.executeForwardBackward(METHOD, args.toArray(new EValue[0]));
        float loss = out[0].toTensor().getDataAsFloatArray()[0];
        Map<String, Tensor> gradients = training.namedGradients(METHOD);
        List<float[]> values = new ArrayList<float[]>();
        for (Tensor g : gradients.values()) {
            values.add(g.getDataAsFloatArray());
        }
        if (!StepGuard.finite(loss, values)) {
            return Float.NaN; // not applied; params keep their values (the program's copy is overwritten next step)
        }
        sgd.step(gradients);
        for (Map.Entry<String, Tensor> e : live.entrySet()) {
            float[] updated = e.getValue().getDataAsFloatArray();
            System.arraycopy(updated, 0, params.get(e.getKey()).data(), 0, updated.length);
        }
        return loss;
    }

    @Override
    public void close() {
        inference.close();
        training.close();
    }

    private static long[] longs(int[] shape) {
        long[] out = new long[shape.length];
        for (int i = 0; i < shape.length; i++) {
            out[i] = shape[i];
        }
        return out;
    }
}
