#!/usr/bin/env bash
# A signed debug APK of the demo app, built with Debian's Android tools (no Android SDK, no Gradle):
#
#   aapt (R.java) → javac against android.jar (API 23) → dx (classes.dex) → aapt (package + add dex)
#   → zipalign → apksigner (debug key made by keytool) → checks: apksigner verify, aapt dump badging
#
# Sources: core/ + app/src/main (the pure-Java engine; app/src/executorch needs the ExecuTorch AAR
# and is left to the Gradle build). Output: build/fedpa-demo.apk.
# The tools come from Debian bookworm (aapt, zipalign, apksigner) and bullseye (dx, android.jar),
# unpacked into .tools/ by tools/debtools.py; when they cannot be fetched the build is skipped
# with "SKIPPED: ..." and exit status 0.
set -euo pipefail
cd "$(dirname "$0")"
HERE=$PWD
OUT=$HERE/build
WORK=$OUT/apk
PACKAGE=org.fedpa.demo
ACTIVITY=org.fedpa.demo.FeedActivity
MIN_SDK=26
TARGET_SDK=34

fetch_log=$(mktemp)
if ! tools_env=$(python3 tools/debtools.py apk 2>"$fetch_log"); then
  echo "SKIPPED: Debian's Android build tools could not be fetched: $(tail -1 "$fetch_log")"
  rm -f "$fetch_log"
  exit 0
fi
rm -f "$fetch_log"
eval "$tools_env"
export LD_LIBRARY_PATH=$TOOLS_LD_LIBRARY_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
APKSIGNER=(java -cp "$APKSIGNER_JAR:$(dirname "$APKSIGNER_JAR")/apksig.jar" com.android.apksigner.ApkSignerTool)

rm -rf "$WORK" && mkdir -p "$WORK/gen" "$WORK/classes" "$WORK/dex"

echo "== manifest (package and SDK levels added for aapt; Gradle takes them from build.gradle.kts)"
sed -e "s|<manifest xmlns:android=\"http://schemas.android.com/apk/res/android\">|<manifest xmlns:android=\"http://schemas.android.com/apk/res/android\" package=\"$PACKAGE\" android:versionCode=\"1\" android:versionName=\"0.1.0\">\n    <uses-sdk android:minSdkVersion=\"$MIN_SDK\" android:targetSdkVersion=\"$TARGET_SDK\" />|" \
  app/src/main/AndroidManifest.xml > "$WORK/AndroidManifest.xml"
grep -q "package=\"$PACKAGE\"" "$WORK/AndroidManifest.xml" || { echo "could not add the package to the manifest"; exit 1; }

echo "== aapt: resources → R.java"
"$AAPT" package -f -m -J "$WORK/gen" -M "$WORK/AndroidManifest.xml" -S app/src/main/res -I "$ANDROID_JAR"

echo "== javac (Java 8 bytecode) against android.jar API 23"
find core/src/main/java app/src/main/java "$WORK/gen" -name '*.java' > "$WORK/sources.txt"
javac -source 8 -target 8 -Xlint:-options -nowarn -encoding UTF-8 -bootclasspath "$ANDROID_JAR" \
  -d "$WORK/classes" @"$WORK/sources.txt" 2>&1 | grep -v '^Note:' || true
[[ -f $WORK/classes/org/fedpa/demo/FeedActivity.class ]] || { echo "javac failed"; exit 1; }

echo "== dx → classes.dex"
java -Xmx512m -jar "$DX_JAR" --dex --min-sdk-version=$MIN_SDK --output="$WORK/dex/classes.dex" "$WORK/classes"

echo "== aapt: package, add classes.dex; zipalign"
"$AAPT" package -f -M "$WORK/AndroidManifest.xml" -S app/src/main/res -I "$ANDROID_JAR" -F "$WORK/unsigned.apk"
(cd "$WORK/dex" && "$AAPT" add "$WORK/unsigned.apk" classes.dex > /dev/null)
"$ZIPALIGN" -f -p 4 "$WORK/unsigned.apk" "$WORK/aligned.apk"

echo "== apksigner with a debug key"
KEYSTORE=$OUT/debug.keystore
if [[ ! -f $KEYSTORE ]]; then
  keytool -genkeypair -keystore "$KEYSTORE" -storepass android -keypass android -alias androiddebugkey \
    -keyalg RSA -keysize 2048 -validity 10000 -dname "CN=Android Debug,O=Android,C=US" > /dev/null 2>&1
fi
"${APKSIGNER[@]}" sign --ks "$KEYSTORE" --ks-pass pass:android --key-pass pass:android --ks-key-alias androiddebugkey \
  --min-sdk-version $MIN_SDK --out "$OUT/fedpa-demo.apk" "$WORK/aligned.apk"

echo "== checks"
"${APKSIGNER[@]}" verify --verbose --min-sdk-version $MIN_SDK "$OUT/fedpa-demo.apk" | head -4
"$ZIPALIGN" -c -p 4 "$OUT/fedpa-demo.apk"
badging=$("$AAPT" dump badging "$OUT/fedpa-demo.apk")
echo "$badging" | grep -E "^(package|launchable-activity|sdkVersion|targetSdkVersion|uses-permission):"
echo "$badging" | grep -q "^package: name='$PACKAGE'" || { echo "FAILED: package is not $PACKAGE"; exit 1; }
echo "$badging" | grep -q "^launchable-activity: name='$ACTIVITY'" || { echo "FAILED: no launchable $ACTIVITY"; exit 1; }
"$AAPT" list "$OUT/fedpa-demo.apk" | grep -qx classes.dex || { echo "FAILED: no classes.dex in the APK"; exit 1; }
echo "APK OK: $OUT/fedpa-demo.apk ($(stat -c %s "$OUT/fedpa-demo.apk") bytes, signed, aligned)"
