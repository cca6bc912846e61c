#!/usr/bin/env bash
# Host tests of the Android demo's plain-Java core, on the JVM with JUnit 4 (Debian's jars).
#
#   1. fetch junit4 + hamcrest + org.json (Debian packages, unpacked into .tools/, no system change)
#   2. write reference data with the project's Python code (tools/make_fixtures.py)
#   3. build a real bundle with `fedpa-export build --dataset synthetic` (cached by source hash)
#   4. sign it with a fresh publisher key, start a real aggregator on loopback (SQLite), publish the
#      bundle (rounds closed by the test)
#   5. compile core (Java 8) + tests; compile app/src/executorch against tools/executorch-stub (the
#      ExecuTorch Java API it uses, at the release gradle.properties pins) and tools/executorch-fake
#      (the same API run by the pure-Java engine); run the tests, the last line is
#      "N passed, N failed, N skipped"
#
# Environment: PYTHON (default: ../.venv/bin/python, else python3) must have the project
# installed with its ml + aggregator extras. Exit status is non-zero if any test failed.
set -euo pipefail
cd "$(dirname "$0")"
HERE=$PWD
BUILD=$HERE/build/test
mkdir -p "$BUILD"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x ../.venv/bin/python ]]; then PYTHON=$(cd .. && pwd)/.venv/bin/python; else PYTHON=$(command -v python3); fi
fi
BIN=$(dirname "$PYTHON")
for tool in fedpa-export fedpa-aggregator; do
  if [[ ! -x $BIN/$tool ]]; then
    echo "$BIN/$tool not found: test.sh needs the project installed with .[ml,aggregator] beside $PYTHON"
    echo "0 passed, 1 failed"
    exit 1
  fi
done
export PYTHONPATH="$(cd .. && pwd)${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # shared 2-core machines: keep torch polite
start=$(date +%s)

echo "== test tools (Debian junit4, hamcrest, org.json)"
if ! tools_env=$(python3 tools/debtools.py test); then
  echo "cannot fetch the JUnit/org.json jars; no tests ran"
  echo "0 passed, 1 failed"
  exit 1
fi
eval "$tools_env"
CP_LIBS=$JSON_JAR:$JUNIT_JAR:$HAMCREST_JAR

echo "== reference data from the Python code"
key=$(cat ../export/*.py ../fedpa/*.py ../fedpa/*/*.py tools/make_fixtures.py 2>/dev/null | sha256sum | cut -c1-16)
FIXTURES=$BUILD/fixtures-$key  # both cached until the Python sources change
if [[ ! -f $FIXTURES/history.json ]]; then
  rm -rf "$BUILD"/fixtures-*
  nice "$PYTHON" tools/make_fixtures.py "$FIXTURES" 2>&1 | grep -v -i -E "warning|torchvision|^\s*$" || true
fi
[[ -f $FIXTURES/history.json ]] || { echo "fixtures were not written"; echo "0 passed, 1 failed"; exit 1; }

echo "== test bundle (fedpa-export build --dataset synthetic)"
BUNDLE=$BUILD/bundle-$key
STUDENT=$BUILD/student-$key.pt  # its item-code rows: the item table's vectors (fedpa-export items --student)
if [[ ! -f $BUNDLE/manifest.json || ! -f $STUDENT ]]; then
  rm -rf "$BUILD"/bundle-* "$BUILD"/student-*
  nice "$BIN/fedpa-export" build --out "$BUNDLE" --dataset synthetic --model-id android-test \
    --option n_users=200 --option n_items=100 --option interactions_per_user=30 --seed 0 \
    --max-batch 256 --max-train-batch 256 --save-student "$STUDENT" 2>&1 | grep -v -E "torchvision|cpuinfo|^\s*$" | tail -4
fi
[[ -f $BUNDLE/manifest.json ]] || { echo "fedpa-export did not write a bundle"; echo "0 passed, 1 failed"; exit 1; }

echo "== publisher key; the test bundle is signed with it (devices pin publisher.pub)"
KEYS=$BUILD/keys
"$BIN/fedpa-export" keygen --out "$KEYS" --overwrite > /dev/null
"$BIN/fedpa-export" sign "$BUNDLE" --signing-key "$KEYS/publisher.key" > /dev/null

echo "== aggregator on loopback"
AGG=$BUILD/aggregator
rm -rf "$AGG" && mkdir -p "$AGG"
DB="sqlite:///$AGG/agg.db"
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# admin commands never create a database: `migrate` does, then the publish goes into it
if ! { "$BIN/fedpa-aggregator" migrate --database-url "$DB" > "$AGG/publish.err" 2>&1 \
    && "$BIN/fedpa-aggregator" admin publish "$BUNDLE" --database-url "$DB" \
    --config '{"round_size": 1000, "min_reporters": 1, "deadline_s": null}' > "$AGG/publish.json" 2>>"$AGG/publish.err"; }; then
  cat "$AGG/publish.err" "$AGG/publish.json"; echo "could not publish the test bundle"; echo "0 passed, 1 failed"; exit 1
fi
ADMIN_TOKEN=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))')
FEDPA_ADMIN_TOKEN=$ADMIN_TOKEN FEDPA_RATE_LIMIT_PER_MINUTE=0 "$BIN/fedpa-aggregator" serve --host 127.0.0.1 --port "$PORT" --database-url "$DB" \
  --log-level warning > "$AGG/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; wait $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if "$PYTHON" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/healthz', timeout=1)" 2>/dev/null; then
    break
  fi
  kill -0 $SERVER_PID 2>/dev/null || { cat "$AGG/server.log"; echo "aggregator died"; echo "0 passed, 1 failed"; exit 1; }
  sleep 0.2
done
echo "aggregator at http://127.0.0.1:$PORT, model $(cat "$AGG/publish.json")"

echo "== item table (fedpa-export items), published; expected lookup rows from the Python code"
ITEMS_EXPECTED=""
SIGNALS_GOLDEN=""
if nice "$BIN/fedpa-export" items --bundle "$BUNDLE" --dataset synthetic --option n_users=200 --option n_items=100 \
    --option interactions_per_user=30 --seed 0 --table-version 1 --student "$STUDENT" --out "$AGG/items.safetensors" > "$AGG/items.log" 2>&1; then
  ITEMS_EXPECTED=$AGG/items-expected.json
  FEDPA_ADMIN_TOKEN=$ADMIN_TOKEN "$PYTHON" - "$AGG/items.safetensors" "http://127.0.0.1:$PORT" "$ITEMS_EXPECTED" <<'PY'
import json, os, sys
from pathlib import Path
import numpy as np
from edge.client import AggregatorClient
from edge.items import publish_item_table
from fedpa.runtime.items import ItemTableFile
path, url, out = sys.argv[1:4]
table = ItemTableFile.decode(Path(path).read_bytes())
with AggregatorClient(url, token=os.environ["FEDPA_ADMIN_TOKEN"]) as admin:
    publish_item_table(admin, table.meta.model_id, path)
ids = [str(i) for i in table.ids[:40]] + ["no-such-item"]
rows = table.lookup(np.array(ids, dtype=object))
Path(out).write_text(json.dumps({"ids": ids, "item_code": rows.item_code.tolist(), "codes": rows.codes.tolist(),
                                 "known": rows.known.tolist(), "table_version": table.meta.table_version,
                                 "vectors": rows.vectors().tolist() if table.meta.vector_dim else None}))
PY
  # what the Python edge client feeds the programs for one phone (item rows from this server, history)
  SIGNALS_GOLDEN=$AGG/signals-golden.json
  if ! "$PYTHON" tools/make_signals_golden.py "$BUNDLE" "http://127.0.0.1:$PORT" android-test "$AGG/items.safetensors" \
      "$SIGNALS_GOLDEN" 2>&1 | grep -v -E "torchvision|cpuinfo|^\s*$"; then
    SIGNALS_GOLDEN=""
  fi
  [[ -f ${SIGNALS_GOLDEN:-/nonexistent} ]] || { echo "the signals golden was not written"; echo "0 passed, 1 failed"; exit 1; }
else
  echo "(no item table: $(tail -1 "$AGG/items.log"))"
fi

echo "== compile (Java 8) and run"
CLASSES=$BUILD/classes
rm -rf "$CLASSES" && mkdir -p "$CLASSES"
if ! javac --release 8 -nowarn -Xlint:-options -encoding UTF-8 -cp "$CP_LIBS" -d "$CLASSES" \
    core/src/main/java/org/fedpa/core/*.java core/src/test/java/org/fedpa/core/*.java > "$BUILD/javac.log" 2>&1; then
  cat "$BUILD/javac.log"; echo "compilation failed"; echo "0 passed, 1 failed"; exit 1
fi

echo "== compile-check app/src/executorch against the ExecuTorch API stub (tools/executorch-stub)"
ET_VERSION=$(sed -n 's/^executorchVersion=//p' gradle.properties)
if ! grep -q "@ executorch v$ET_VERSION " tools/executorch-stub/org/pytorch/executorch/Module.java; then
  echo "gradle.properties pins executorch $ET_VERSION but tools/executorch-stub cites another release: re-read the"
  echo "upstream sources of that tag and update the stub (tools/executorch-stub/README.md)"; echo "0 passed, 1 failed"; exit 1
fi
ET=$BUILD/executorch
rm -rf "$ET" && mkdir -p "$ET/gen/org/fedpa/demo" "$ET/stub" "$ET/app" "$ET/fake" "$ET/app-vs-fake"
# what AGP generates from app/build.gradle.kts (buildConfigField EXECUTORCH_VERSION from gradle.properties)
printf 'package org.fedpa.demo;\npublic final class BuildConfig {\n    public static final String EXECUTORCH_VERSION = "%s";\n}\n' \
  "$ET_VERSION" > "$ET/gen/org/fedpa/demo/BuildConfig.java"
JAVAC8=(javac --release 8 -nowarn -Xlint:-options -encoding UTF-8)
APP_ET_SOURCES=$(find app/src/executorch "$ET/gen" -name '*.java')
# 1. the stub (signatures only), the app's ExecuTorch code against it; 2. the fake (same API, run by
# the pure-Java engine) and the app's code against it too, so both present the same API to the app
if ! { "${JAVAC8[@]}" -d "$ET/stub" $(find tools/executorch-stub -name '*.java') \
    && "${JAVAC8[@]}" -cp "$CLASSES:$JSON_JAR:$ET/stub" -d "$ET/app" $APP_ET_SOURCES \
    && "${JAVAC8[@]}" -cp "$CLASSES:$JSON_JAR" -d "$ET/fake" $(find tools/executorch-fake -name '*.java') \
    && "${JAVAC8[@]}" -cp "$CLASSES:$JSON_JAR:$ET/fake" -d "$ET/app-vs-fake" $APP_ET_SOURCES; } > "$BUILD/javac-executorch.log" 2>&1; then
  cat "$BUILD/javac-executorch.log"; echo "app/src/executorch does not compile against the ExecuTorch $ET_VERSION API (stub or fake)"
  echo "0 passed, 1 failed"; exit 1
fi
echo "app/src/executorch compiles against the ExecuTorch $ET_VERSION Java API it uses (stub) and the fake"

tests=()
for f in core/src/test/java/org/fedpa/core/*Test.java; do tests+=("org.fedpa.core.$(basename "$f" .java)"); done
echo "setup took $(( $(date +%s) - start )) s"
set +e
java -cp "$CLASSES:$CP_LIBS" \
  -Dfedpa.fixtures="$FIXTURES" -Dfedpa.bundle="$BUNDLE" -Dfedpa.python="$PYTHON" -Dfedpa.executorch.version="$ET_VERSION" \
  -Dfedpa.executorch.app="$ET/app" -Dfedpa.executorch.stub="$ET/stub" -Dfedpa.executorch.fake="$ET/fake" \
  -Dfedpa.server="http://127.0.0.1:$PORT" -Dfedpa.model=android-test -Dfedpa.admin="$ADMIN_TOKEN" -Dfedpa.items="$ITEMS_EXPECTED" -Dfedpa.signals="$SIGNALS_GOLDEN" \
  -Dfedpa.publisherKey="$KEYS/publisher.pub" \
  org.fedpa.core.HostTestMain "${tests[@]}" > "$BUILD/junit.log" 2>&1
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
  echo "--- aggregator log (tail)"; tail -20 "$AGG/server.log"
else
  java -cp "$CLASSES:$CP_LIBS" org.fedpa.core.EngineBench "$BUNDLE" || true  # informational
fi
cat "$BUILD/junit.log"  # ends with the closing "N passed, N failed, N skipped" line
exit $rc
