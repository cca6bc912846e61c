package org.fedpa.demo;

import android.content.Context;
import android.view.View;
import android.widget.Button;
import android.widget.LinearLayout;
import android.widget.TextView;

/** Views built in code: the Debian-built APK then needs no layout resources. */
final class Ui {
    private Ui() {
    }

    static LinearLayout column(Context c) {
        LinearLayout l = new LinearLayout(c);
        l.setOrientation(LinearLayout.VERTICAL);
        int pad = dp(c, 8);
        l.setPadding(pad, pad, pad, pad);
        return l;
    }

    static LinearLayout row(Context c) {
        LinearLayout l = new LinearLayout(c);
        l.setOrientation(LinearLayout.HORIZONTAL);
        return l;
    }

    static TextView text(Context c, String s, int sp) {
        TextView t = new TextView(c);
        t.setText(s);
        t.setTextSize(sp);
        return t;
    }

    static Button button(Context c, String label, View.OnClickListener onClick) {
        Button b = new Button(c);
        b.setText(label);
        b.setOnClickListener(onClick);
        return b;
    }

    static int dp(Context c, int dp) {
        return (int) (dp * c.getResources().getDisplayMetrics().density + 0.5f);
    }
}
