package org.fedpa.demo;

import android.app.Activity;
import android.content.Intent;
import android.graphics.Color;
import android.os.Bundle;
import android.view.View;
import android.view.ViewGroup;
import android.widget.BaseAdapter;
import android.widget.Button;
import android.widget.LinearLayout;
import android.widget.ListView;
import android.widget.ProgressBar;
import android.widget.TextView;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.fedpa.core.Catalog;
import org.fedpa.core.DevicePolicy;
import org.fedpa.core.DeviceState;
import org.fedpa.core.FedPAClient;
import org.fedpa.core.Interaction;

/**
 * The feed: the top-K items for the local user ranked on the phone by the student + its private
 * and group adapters, Tap / Skip buttons that label them, and "Train + sync" which trains locally
 * and uploads an LDP-noised update (progress and epsilon spent shown at the top).
 */
public class FeedActivity extends Activity {
    private AppState app;
    private TextView header;
    private TextView message;
    private ProgressBar progress;
    private Button sync;
    private final FeedAdapter adapter = new FeedAdapter();
    private final Map<String, Integer> labels = new HashMap<String, Integer>();

    @Override
    protected void onCreate(Bundle saved) {
        super.onCreate(saved);
        LinearLayout root = Ui.column(this);
        header = Ui.text(this, "", 15);
        message = Ui.text(this, "", 14);
        LinearLayout buttons = Ui.row(this);
        sync = Ui.button(this, "Train + sync", new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                trainAndSync();
            }
        });
        buttons.addView(sync);
        buttons.addView(Ui.button(this, "Settings", new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                startActivity(new Intent(FeedActivity.this, SettingsActivity.class));
            }
        }));
        progress = new ProgressBar(this, null, android.R.attr.progressBarStyleHorizontal);
        progress.setMax(1000);
        progress.setVisibility(View.GONE);
        ListView list = new ListView(this);
        list.setAdapter(adapter);
        root.addView(header);
        root.addView(buttons);
        root.addView(progress);
        root.addView(message);
        root.addView(list, new LinearLayout.LayoutParams(ViewGroup.LayoutParams.MATCH_PARENT, 0, 1f));
        setContentView(root);
    }

    @Override
    protected void onResume() {
        super.onResume();
        try {
            app = AppState.get(this);
        } catch (Exception e) {
            show(Messages.describe(e), true);
            sync.setEnabled(false);
            return;
        }
        sync.setEnabled(true);
        refresh(null, false);
    }

    private void show(String text, boolean error) {
        message.setText(text);
        message.setTextColor(error ? Color.rgb(176, 0, 32) : Color.DKGRAY);
    }

    private void updateHeader() {
        DeviceState s = app.client.state();
        DevicePolicy policy = app.client.policy();
        String eps = s.epsilonSpent >= Double.MAX_VALUE / 2 ? "unbounded (no LDP)"
                : String.format(Locale.ROOT, "%.3f", s.epsilonSpent);
        String notice = app.runtimeNotice();
        String keyId = app.publisherKeyId();
        String trust = keyId != null ? "publisher key " + keyId.substring(0, 16) + "…"
                : app.allowUnsigned() ? "⚠ DEBUG: unsigned models accepted (no publisher key)"
                : "⚠ no publisher key: paste publisher.pub in Settings to sync";
        // epsilon as the device's accountant charges it (replacement adjacency, at the device's delta)
        header.setText(String.format(Locale.ROOT, "%s · model %s v%d · engine: %s%n%s%nuploads accepted: %d · privacy "
                        + "spent ε = %s of this device's budget ε ≤ %s (replacement adjacency, δ = %s)%s%s",
                s.serverUrl.isEmpty() ? "(no server: open Settings)" : s.serverUrl, s.modelId, s.modelVersion,
                app.runtimeName(), trust, s.roundsCompleted, eps, fmt(policy.epsilonBudget), fmt(policy.delta),
                s.pendingNonce != null ? " · 1 upload pending" : "", notice == null ? "" : "\n⚠ " + notice));
    }

    private static String fmt(double v) {
        return java.math.BigDecimal.valueOf(v).stripTrailingZeros().toPlainString(); // 8, 0.00001
    }

    /**
     * Rank the catalogue for the local user (offline: the last downloaded shared state); then show
     * {@code note} if given, else a summary.
     */
    private void refresh(final String note, final boolean noteIsError) {
        updateHeader();
        app.run(new AppState.Task<Object[]>() {
            @Override
            public Object[] call() throws Exception {
                List<Object[]> feed = app.client.feed(app.catalog(), AppState.FEED_SIZE);
                List<Interaction> log = app.client.store().loadInteractions();
                List<String> warnings = app.client.store().takeWarnings();
                return new Object[] {feed, log, warnings};
            }
        }, new AppState.Callback<Object[]>() {
            @SuppressWarnings("unchecked")
            @Override
            public void done(Object[] r) {
                labels.clear();
                for (Interaction i : (List<Interaction>) r[1]) {
                    labels.put(i.itemKey, i.label);
                }
                adapter.set((List<Object[]>) r[0]);
                List<String> warnings = (List<String>) r[2];
                if (!warnings.isEmpty()) {
                    show("Repaired local data: " + warnings + (note == null ? "" : "\n" + note), true);
                } else if (note != null) {
                    show(note, noteIsError);
                } else {
                    show(labels.size() + " items labelled on this phone. Tap or skip items, then Train + sync.", false);
                }
                updateHeader();
            }

            @Override
            public void failed(String text) {
                adapter.set(new ArrayList<Object[]>());
                show(note == null ? text : note + "\n" + text, true);
            }
        });
    }

    private void label(final Catalog.Item item, final int label) {
        labels.put(item.key, label);
        adapter.notifyDataSetChanged();
        app.run(new AppState.Task<Integer>() {
            @Override
            public Integer call() throws Exception {
                return app.client.label(item, label).size();
            }
        }, new AppState.Callback<Integer>() {
            @Override
            public void done(Integer n) {
                show(n + " interactions stored on this phone (never uploaded).", false);
            }

            @Override
            public void failed(String text) {
                labels.remove(item.key);
                adapter.notifyDataSetChanged();
                show(text, true);
            }
        });
    }

    private void trainAndSync() {
        sync.setEnabled(false);
        progress.setVisibility(View.VISIBLE);
        progress.setProgress(0);
        show("Starting…", false);
        final FedPAClient.Progress listener = new FedPAClient.Progress() {
            @Override
            public void update(final String text, final double fraction) {
                app.post(new Runnable() {
                    @Override
                    public void run() {
                        progress.setProgress((int) (1000 * fraction));
                        show(text, false);
                    }
                });
            }
        };
        app.run(new AppState.Task<FedPAClient.RoundResult>() {
            @Override
            public FedPAClient.RoundResult call() throws Exception {
                app.checkServer();
                app.applyTrust(); // no key pinned (and no debug switch): refused before any network call
                return app.client.trainAndSync(listener);
            }
        }, new AppState.Callback<FedPAClient.RoundResult>() {
            @Override
            public void done(FedPAClient.RoundResult r) {
                roundDone(describe(r), !"accepted".equals(r.status) && !"skipped".equals(r.status));
            }

            @Override
            public void failed(String text) {
                roundDone(text, true);
            }
        });
    }

    private void roundDone(String text, boolean error) {
        sync.setEnabled(true);
        progress.setVisibility(View.GONE);
        refresh(text, error);
    }

    private static String describe(FedPAClient.RoundResult r) {
        if ("skipped".equals(r.status)) {
            return "Model ready. " + r.detail;
        }
        if ("accepted".equals(r.status) && !r.discarded.isEmpty()) {
            return String.format(Locale.ROOT,
                    "Local training diverged (%s, mean loss %.4g): your adapters were kept and a zero update, "
                    + "noised like any other, was sent (%d examples, base state v%d); ε spent now %.3f.",
                    r.discarded, r.meanLoss, r.examples, r.baseVersion, r.epsilon);
        }
        if ("accepted".equals(r.status)) {
            return String.format(Locale.ROOT,
                    "Update accepted (%d examples, base state v%d). Local loss %.4f → %.4f; your AUC on your own "
                    + "taps/skips %s → %s; ε spent now %.3f.%s",
                    r.examples, r.baseVersion, r.lossBefore, r.lossAfter, auc(r.aucBefore), auc(r.aucAfter), r.epsilon,
                    r.skippedSteps == 0 ? "" : "\n" + r.skippedSteps + " training step(s) skipped: non-finite loss or gradient.");
        }
        return "Update " + r.status + ": " + r.detail + "\nYour private adapter is unchanged; sync again to retrain.";
    }

    private static String auc(double v) {
        return Double.isNaN(v) ? "n/a (tap some and skip some)" : String.format(Locale.ROOT, "%.3f", v);
    }

    /** Rows: title, click probability, label, and the two buttons. */
    private final class FeedAdapter extends BaseAdapter {
        private List<Object[]> rows = new ArrayList<Object[]>();

        void set(List<Object[]> rows) {
            this.rows = rows;
            notifyDataSetChanged();
        }

        @Override
        public int getCount() {
            return rows.size();
        }

        @Override
        public Object getItem(int position) {
            return rows.get(position);
        }

        @Override
        public long getItemId(int position) {
            return position;
        }

        @Override
        public View getView(int position, View convertView, ViewGroup parent) {
            final Catalog.Item item = (Catalog.Item) rows.get(position)[0];
            double p = (Double) rows.get(position)[1];
            Integer label = labels.get(item.key);
            LinearLayout row = Ui.column(FeedActivity.this);
            row.addView(Ui.text(FeedActivity.this, (position + 1) + ". " + item.title, 16));
            row.addView(Ui.text(FeedActivity.this, String.format(Locale.ROOT, "%s · p(tap) = %.3f%s", item.key, p,
                    label == null ? "" : label == 1 ? " · you tapped" : " · you skipped"), 13));
            LinearLayout actions = Ui.row(FeedActivity.this);
            actions.addView(Ui.button(FeedActivity.this, "Tap", new View.OnClickListener() {
                @Override
                public void onClick(View v) {
                    label(item, 1);
                }
            }));
            actions.addView(Ui.button(FeedActivity.this, "Skip", new View.OnClickListener() {
                @Override
                public void onClick(View v) {
                    label(item, 0);
                }
            }));
            row.addView(actions);
            return row;
        }
    }
}
