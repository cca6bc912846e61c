package org.fedpa.core;

import static org.junit.Assert.assertEquals;

import org.json.JSONObject;
import org.junit.Test;

/**
 * The app trains with the project's one set of local-training defaults: {@link TrainingConfig#defaults()}
 * must equal the fields of the Python {@code fedpa.schedule.LocalTraining()} the edge client, the
 * demo and the simulation use, and {@link DivergedRun#LOSS} its {@code DIVERGED_LOSS}, read from
 * the project's own code (not copied into this test).
 */
public class TrainingDefaultsTest {
    @Test
    public void javaDefaultsEqualThePythonLocalTrainingDefaults() throws Exception {
        String out = SafeTensorsTest.runPython("import dataclasses, json\n"
                + "from fedpa.schedule import DIVERGED_LOSS, LocalTraining\n"
                + "print('DEFAULTS ' + json.dumps({**dataclasses.asdict(LocalTraining()), "
                + "'diverged_loss': DIVERGED_LOSS}))\n", "");
        String line = out.substring(out.lastIndexOf("DEFAULTS ") + "DEFAULTS ".length()).trim();
        JSONObject py = new JSONObject(line);
        TrainingConfig java = TrainingConfig.defaults();
        assertEquals("epochs", py.getInt("epochs"), java.epochs);
        assertEquals("batch_size", py.getInt("batch_size"), java.batchSize);
        assertEquals("lr (float32 of the Python float)", (float) py.getDouble("lr"), java.lr, 0f);
        assertEquals("DIVERGED_LOSS (a diverged run is discarded the same way)", py.getDouble("diverged_loss"),
                DivergedRun.LOSS, 0.0);
    }
}
