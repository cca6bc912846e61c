package org.fedpa.demo;

import android.app.Activity;
import android.graphics.Color;
import android.os.Bundle;
import android.text.InputType;
import android.view.View;
import android.widget.ArrayAdapter;
import android.widget.CheckBox;
import android.widget.EditText;
import android.widget.LinearLayout;
import android.widget.ScrollView;
import android.widget.Spinner;
import android.widget.TextView;
import java.util.ArrayList;
import java.util.List;
import org.fedpa.core.BundleException;
import org.fedpa.core.DeviceState;
import org.fedpa.core.Manifest;
import org.fedpa.core.ServerPolicy;
import org.fedpa.core.Signatures;
import org.fedpa.core.SyncException;

/**
 * Server URL (HTTPS; plain HTTP to a loopback/emulator host only in debug builds, behind an
 * explicit switch), model id, the publisher's public key that every installed model must be signed
 * with (unsigned models only in debug builds, behind another switch), and the local user's profile (its user-feature values, which pick
 * the group adapters it trains and downloads). "Reset" moves the local data aside, never deletes.
 */
public class SettingsActivity extends Activity {
    private AppState app;
    private EditText server;
    private EditText model;
    private CheckBox plainHttp;
    private EditText publisherKey;
    private CheckBox allowUnsigned;
    private TextView message;
    private final List<Spinner> features = new ArrayList<Spinner>();

    @Override
    protected void onCreate(Bundle saved) {
        super.onCreate(saved);
        LinearLayout root = Ui.column(this);
        message = Ui.text(this, "", 14);
        server = new EditText(this);
        server.setInputType(InputType.TYPE_CLASS_TEXT | InputType.TYPE_TEXT_VARIATION_URI);
        server.setSingleLine(true);
        model = new EditText(this);
        model.setSingleLine(true);
        root.addView(Ui.text(this, "Aggregator URL (https://…)", 14));
        root.addView(server);
        root.addView(Ui.text(this, "Model id", 14));
        root.addView(model);
        plainHttp = new CheckBox(this);
        plainHttp.setText("Debug: allow plain HTTP to this computer (http://10.0.2.2 from the emulator, "
                + "http://127.0.0.1 on the device; never to another machine)");
        root.addView(plainHttp);
        publisherKey = new EditText(this);
        publisherKey.setInputType(InputType.TYPE_CLASS_TEXT | InputType.TYPE_TEXT_FLAG_MULTI_LINE
                | InputType.TYPE_TEXT_FLAG_NO_SUGGESTIONS);
        publisherKey.setMinLines(4);
        publisherKey.setHint("-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----");
        root.addView(Ui.text(this, "Publisher's public key (paste publisher.pub from fedpa-export keygen): only models "
                + "signed with this key are installed; syncing needs it", 14));
        root.addView(publisherKey);
        allowUnsigned = new CheckBox(this);
        allowUnsigned.setText("Debug: install unsigned models while no publisher key is set (development server only)");
        root.addView(allowUnsigned);
        final LinearLayout profile = Ui.column(this);
        root.addView(profile);
        try {
            app = AppState.get(this);
            plainHttp.setChecked(app.allowPlainHttp());
            plainHttp.setVisibility(app.debuggable() ? View.VISIBLE : View.GONE); // release builds: HTTPS only
            publisherKey.setText(app.publisherKey());
            allowUnsigned.setChecked(app.allowUnsigned());
            allowUnsigned.setVisibility(app.debuggable() ? View.VISIBLE : View.GONE); // release builds: signed only
            load(profile);
        } catch (Exception e) {
            show(Messages.describe(e), true);
        }
        LinearLayout buttons = Ui.row(this);
        buttons.addView(Ui.button(this, "Save", new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                save();
            }
        }));
        buttons.addView(Ui.button(this, "Reset local data", new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                reset();
            }
        }));
        root.addView(buttons);
        root.addView(message);
        ScrollView scroll = new ScrollView(this);
        scroll.addView(root);
        setContentView(scroll);
    }

    /** Read the state and the manifest on the worker thread (never while a sync is using them). */
    private void load(final LinearLayout profile) {
        app.run(new AppState.Task<Object[]>() {
            @Override
            public Object[] call() {
                Manifest m = null;
                try {
                    m = app.client.model().manifest();
                } catch (Exception e) {
                    // no model yet: only URL and model id can be set
                }
                DeviceState s = app.client.state();
                return new Object[] {s.serverUrl, s.modelId, s.userCodes == null ? null : s.userCodes.clone(), m};
            }
        }, new AppState.Callback<Object[]>() {
            @Override
            public void done(Object[] r) {
                server.setText((String) r[0]);
                model.setText((String) r[1]);
                addProfile(profile, (long[]) r[2], (Manifest) r[3]);
            }

            @Override
            public void failed(String text) {
                show(text, true);
            }
        });
    }

    /** One spinner per user feature, once a model is on the phone ("?" = unknown, code 0). */
    private void addProfile(LinearLayout root, long[] userCodes, Manifest m) {
        if (m == null) {
            root.addView(Ui.text(this, "(Your profile can be set once the model is downloaded: save, then Train + sync.)", 13));
            return;
        }
        root.addView(Ui.text(this, "Your profile (grouping attributes: " + m.config.groupAttributes + ")", 14));
        for (int f = 0; f < m.config.nUserFeatures; f++) {
            Manifest.Feature feature = m.features.get(f);
            List<String> values = new ArrayList<String>();
            for (int code = 0; code < m.config.cardinalities[f]; code++) {
                values.add(feature.label(code));
            }
            Spinner spinner = new Spinner(this);
            spinner.setAdapter(new ArrayAdapter<String>(this, android.R.layout.simple_spinner_dropdown_item, values));
            if (userCodes != null && f < userCodes.length) {
                spinner.setSelection((int) userCodes[f]);
            }
            root.addView(Ui.text(this, feature.name, 13));
            root.addView(spinner);
            features.add(spinner);
        }
    }

    private void reset() {
        if (app == null) {
            return;
        }
        app.run(new AppState.Task<String>() {
            @Override
            public String call() {
                return AppState.reset(SettingsActivity.this);
            }
        }, new AppState.Callback<String>() {
            @Override
            public void done(String text) {
                show(text + ". Set the server again and sync to start over.", false);
            }

            @Override
            public void failed(String text) {
                show(text, true);
            }
        });
    }

    private void save() {
        if (app == null) {
            return;
        }
        final String url = server.getText().toString().trim();
        final String id = model.getText().toString().trim();
        final boolean allowHttp = app.debuggable() && plainHttp.isChecked();
        final String pem = publisherKey.getText().toString().trim();
        final boolean unsigned = app.debuggable() && allowUnsigned.isChecked();
        try {
            ServerPolicy.check(url, allowHttp);
        } catch (SyncException e) {
            show(e.getMessage(), true);
            return;
        }
        if (!pem.isEmpty()) {
            try {
                Signatures.publicKey(pem); // refuse a bad paste here; nothing is saved
            } catch (BundleException e) {
                show("Publisher key refused: " + e.getMessage(), true);
                return;
            }
        }
        if (id.isEmpty()) {
            show("The model id must not be empty", true);
            return;
        }
        final long[] codes = new long[features.size()];
        for (int i = 0; i < codes.length; i++) {
            codes[i] = features.get(i).getSelectedItemPosition();
        }
        app.run(new AppState.Task<Boolean>() {
            @Override
            public Boolean call() throws Exception {
                app.setAllowPlainHttp(allowHttp);
                app.setPublisherKey(pem);
                app.setAllowUnsigned(unsigned);
                app.client.configure(url, id);
                if (codes.length > 0) {
                    app.client.setUserCodes(codes);
                }
                return Boolean.TRUE;
            }
        }, new AppState.Callback<Boolean>() {
            @Override
            public void done(Boolean ok) {
                finish();
            }

            @Override
            public void failed(String text) {
                show(text, true);
            }
        });
    }

    private void show(String text, boolean error) {
        message.setText(text);
        message.setTextColor(error ? Color.rgb(176, 0, 32) : Color.DKGRAY);
    }
}
