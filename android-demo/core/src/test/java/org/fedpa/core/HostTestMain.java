package org.fedpa.core;

import java.util.ArrayList;
import java.util.List;
import org.junit.runner.Description;
import org.junit.runner.JUnitCore;
import org.junit.runner.Request;
import org.junit.runner.notification.Failure;
import org.junit.runner.notification.RunListener;

/**
 * Runs the given JUnit 4 test classes, one line per test, and ends with the closing line CI
 * reads: {@code N passed, N failed, N skipped}. Exit status 1 if anything failed.
 */
public final class HostTestMain {
    private HostTestMain() {
    }

    public static void main(String[] args) throws Exception {
        final int[] counts = new int[3]; // passed, failed, skipped
        final List<String> failed = new ArrayList<String>();
        JUnitCore core = new JUnitCore();
        core.addListener(new RunListener() {
            private boolean bad;

            @Override
            public void testStarted(Description d) {
                bad = false;
            }

            @Override
            public void testFailure(Failure f) {
                bad = true;
                counts[1]++;
                failed.add(f.getDescription().getDisplayName());
                System.out.println("FAIL  " + name(f.getDescription()) + "\n      " + f.getMessage());
                String trace = f.getTrace();
                String[] lines = trace.split("\n");
                for (int i = 1; i < Math.min(lines.length, 6); i++) {
                    System.out.println("      " + lines[i].trim());
                }
            }

            @Override
            public void testAssumptionFailure(Failure f) {
                bad = true;
                counts[2]++;
                System.out.println("SKIP  " + name(f.getDescription()) + ": " + f.getMessage());
            }

            @Override
            public void testIgnored(Description d) {
                counts[2]++;
                System.out.println("SKIP  " + name(d));
            }

            @Override
            public void testFinished(Description d) {
                if (!bad) {
                    counts[0]++;
                    System.out.println("ok    " + name(d));
                }
            }
        });
        long start = System.nanoTime();
        for (String cls : args) {
            core.run(Request.aClass(Class.forName(cls))); // class-level failures reach the listener too
        }
        System.out.printf("java host tests: %.1f s%n", (System.nanoTime() - start) / 1e9);
        if (!failed.isEmpty()) {
            System.out.println("failed: " + failed);
        }
        System.out.println(counts[0] + " passed, " + counts[1] + " failed, " + counts[2] + " skipped");
        System.exit(counts[1] == 0 && counts[0] > 0 ? 0 : 1);
    }

    private static String name(Description d) {
        String cls = d.getClassName();
        return cls.substring(cls.lastIndexOf('.') + 1) + "." + d.getMethodName();
    }
}
