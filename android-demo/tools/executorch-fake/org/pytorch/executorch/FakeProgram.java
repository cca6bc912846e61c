package org.pytorch.executorch;

import java.io.File;
import java.util.LinkedHashMap;
import java.util.Map;
import org.fedpa.core.Bundle;
import org.fedpa.core.Model;

/** The bundle a .pte file belongs to, opened with the pure-Java engine that stands in for the program. */
public final class FakeProgram {
    private FakeProgram() {
    }

    public static Model open(String ptePath) {
        try {
            return new Model(Bundle.open(new File(ptePath).getParentFile()));
        } catch (Exception e) {
            throw new IllegalArgumentException("fake ExecuTorch cannot open " + ptePath + ": " + e.getMessage(), e);
        }
    }

    /** ExecuTorch tensors → the engine's, by name (copies). */
    public static Map<String, org.fedpa.core.Tensor> toCore(Map<String, Tensor> in) {
        Map<String, org.fedpa.core.Tensor> out = new LinkedHashMap<String, org.fedpa.core.Tensor>();
        for (Map.Entry<String, Tensor> e : in.entrySet()) {
            out.put(e.getKey(), org.fedpa.core.Tensor.of(e.getValue().getDataAsFloatArray(), e.getValue().intShape()));
        }
        return out;
    }

    /**
     * Check the frozen inputs a runtime passed (inputs[first..]) against the bundle's frozen weights
     * in {@code program}'s declared order: the real program would compute garbage with wrong ones.
     */
    public static void checkFrozen(Model model, String program, EValue[] inputs, int first) {
        try {
            java.util.List<String> names = new java.util.ArrayList<String>(
                    org.fedpa.core.FrozenWeights.declared(model.manifest(), program).keySet());
            if (inputs.length != first + names.size()) {
                throw new IllegalArgumentException(program + " takes " + (first + names.size()) + " inputs, got "
                        + inputs.length);
            }
            for (int i = 0; i < names.size(); i++) {
                float[] want = model.engine().frozen().byName.get(names.get(i)).data();
                if (!java.util.Arrays.equals(want, inputs[first + i].toTensor().getDataAsFloatArray())) {
                    throw new IllegalArgumentException(program + " input " + (first + i) + " is not frozen tensor "
                            + names.get(i));
                }
            }
        } catch (org.fedpa.core.BundleException e) {
            throw new IllegalArgumentException(e);
        }
    }

    public static long[] codes(Tensor t) {
        return t.longs();
    }

    public static int rows(Tensor t) {
        return (int) t.shape[0];
    }

    /**
     * The program's {@code item_vector} input [n, d] for the rows of {@code x}: the stand-in engine
     * embeds the item code from its item vectors by code, so it learns these (the runtime's) first.
     */
    public static void learnItemVectors(Model model, Tensor x, Tensor itemVector) {
        org.fedpa.core.ItemVectors book = model.engine().itemVectors();
        int n = rows(x);
        int nf = (int) x.shape[1];
        int column = model.manifest().config.itemColumn;
        float[] v = itemVector.getDataAsFloatArray();
        int d = book.dim();
        long[] codes = codes(x);
        for (int i = 0; i < n; i++) {
            book.put(codes[i * nf + column], java.util.Arrays.copyOfRange(v, i * d, (i + 1) * d));
        }
    }
}
