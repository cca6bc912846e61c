package org.pytorch.executorch;

import java.io.Closeable;
import java.util.LinkedHashMap;
import java.util.Map;
import org.fedpa.core.Model;
import org.json.JSONArray;

/** Fake of ExecuTorch's Module for inference.pte: inputs x then the personalisation in the manifest's order. */
public class Module implements Closeable {
    private final Model model;
    private final String[] names;

    private Module(Model model) {
        this.model = model;
        try {
            JSONArray inputs = model.manifest().programs.getJSONObject("inference").getJSONArray("inputs");
            names = new String[inputs.length()];
            for (int i = 0; i < names.length; i++) {
                names[i] = inputs.getJSONObject(i).getString("name");
            }
        } catch (org.json.JSONException e) {
            throw new IllegalArgumentException(e);
        }
    }

    public static Module load(String modelPath) {
        return new Module(FakeProgram.open(modelPath));
    }

    public EValue[] forward(EValue... inputs) {
        if (inputs.length != names.length) {
            throw new IllegalArgumentException("inference.pte takes " + names.length + " inputs, got " + inputs.length);
        }
        Map<String, Tensor> params = new LinkedHashMap<String, Tensor>();
        Tensor x = inputs[0].toTensor();
        for (int i = 1; i < inputs.length; i++) {
            if ("item_vector".equals(names[i])) {
                FakeProgram.learnItemVectors(model, x, inputs[i].toTensor());
            } else {
                params.put(names[i], inputs[i].toTensor());
            }
        }
        int n = FakeProgram.rows(x);
        float[] logits = model.engine().score(FakeProgram.codes(x), n, FakeProgram.toCore(params));
        return new EValue[] {EValue.from(Tensor.fromBlob(logits, new long[] {n}))};
    }

    @Override
    public void close() {
    }
}
