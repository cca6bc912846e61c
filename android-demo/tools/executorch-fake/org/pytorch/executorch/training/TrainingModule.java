package org.pytorch.executorch.training;

import java.io.Closeable;
import java.nio.FloatBuffer;
import java.util.LinkedHashMap;
import java.util.Map;
import org.fedpa.core.Model;
import org.fedpa.core.Trainer;
import org.json.JSONArray;
import org.json.JSONObject;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.FakeProgram;
import org.pytorch.executorch.Tensor;

/**
 * Fake of ExecuTorch's TrainingModule for training.pte: its parameters (the manifest's non-gradient
 * training outputs) live in float buffers; forward+backward is the pure-Java Trainer's.
 */
public final class TrainingModule implements Closeable {
    private final Model model;
    private final Map<String, Tensor> parameters = new LinkedHashMap<String, Tensor>();
    private Map<String, Tensor> gradients = new LinkedHashMap<String, Tensor>();

    private TrainingModule(Model model) {
        this.model = model;
        try {
            JSONArray outputs = model.manifest().programs.getJSONObject("training").getJSONArray("outputs");
            for (int i = 0; i < outputs.length(); i++) {
                JSONObject o = outputs.getJSONObject(i);
                String name = o.getString("name");
                if ("loss".equals(o.optString("group")) || name.endsWith(".grad")) {
                    continue;
                }
                JSONArray s = o.getJSONArray("shape");
                long[] shape = new long[s.length()];
                int numel = 1;
                for (int d = 0; d < shape.length; d++) {
                    shape[d] = s.getLong(d);
                    numel *= (int) shape[d];
                }
                parameters.put(name, Tensor.fromBlob(new float[numel], shape));
            }
        } catch (org.json.JSONException e) {
            throw new IllegalArgumentException(e);
        }
    }

    public static TrainingModule load(String modelPath) {
        return new TrainingModule(FakeProgram.open(modelPath));
    }

    public EValue[] executeForwardBackward(String methodName, EValue... inputs) {
        boolean itemVector = model.engine().itemVectors() != null; // training.pte's (x, y, [item_vector,] frozen…)
        FakeProgram.checkFrozen(model, "training", inputs, itemVector ? 3 : 2);
        Tensor x = inputs[0].toTensor();
        float[] y = inputs[1].toTensor().getDataAsFloatArray();
        if (itemVector) {
            FakeProgram.learnItemVectors(model, x, inputs[2].toTensor());
        }
        Trainer.Result r = model.trainer().gradients(FakeProgram.codes(x), y, y.length, FakeProgram.toCore(parameters));
        Map<String, Tensor> g = new LinkedHashMap<String, Tensor>();
        for (Map.Entry<String, Tensor> e : parameters.entrySet()) {
            g.put(e.getKey(), Tensor.fromBlob(r.gradients.get(e.getKey()), new long[] {r.gradients.get(e.getKey()).length}));
        }
        gradients = g;
        return new EValue[] {EValue.from(Tensor.fromBlob(new float[] {r.loss}, new long[0]))};
    }

    /** The same tensor objects every call: writes through their buffers change the "program". */
    public Map<String, Tensor> namedParameters(String methodName) {
        return parameters;
    }

    public Map<String, Tensor> namedGradients(String methodName) {
        return gradients;
    }

    @Override
    public void close() {
    }

    static FloatBuffer buffer(Tensor t) {
        return (FloatBuffer) t.getRawDataBuffer();
    }
}
