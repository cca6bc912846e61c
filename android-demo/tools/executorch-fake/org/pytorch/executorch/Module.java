package org.pytorch.executorch;

import java.io.Closeable;
import java.util.LinkedHashMap;
import java.util.Map;
import org.fedpa.core.Model;
import org.json.JSONArray;

/** Fake of ExecuTorch's Module for inference.pte: inputs x, the personalisation, then the frozen tensors (manifest order). */
public class Module implements Closeable {
    private final Model model;
    private final String[] names;
    private final int nPersonal; // personalisation inputs (after x and any item_vector); the rest are frozen
    private final boolean hasItemVector;

    private Module(Model model) {
        this.model = model;
        try {
            JSONArray inputs = model.manifest().programs.getJSONObject("inference").getJSONArray("inputs");
            names = new String[inputs.length()];
            int personal = 0;
            for (int i = 0; i < names.length; i++) {
                names[i] = inputs.getJSONObject(i).getString("name");
                String group = inputs.getJSONObject(i).optString("group");
                personal += "private".equals(group) || "group".equals(group) || "gate".equals(group) ? 1 : 0;
            }
            nPersonal = personal;
            hasItemVector = java.util.Arrays.asList(names).contains("item_vector");
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
        int firstFrozen = 1 + nPersonal + (hasItemVector ? 1 : 0); // x, [item_vector,] personalisation, frozen
        FakeProgram.checkFrozen(model, "inference", inputs, firstFrozen);
        Map<String, Tensor> params = new LinkedHashMap<String, Tensor>();
        Tensor x = inputs[0].toTensor();
        for (int i = 1; i < firstFrozen; i++) {
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
