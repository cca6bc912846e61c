plugins {
    id("com.android.application")
}

val executorchVersion = property("executorchVersion") as String

android {
    namespace = "org.fedpa.demo"
    // 34: what executorch-android 1.4.1 compiles against (and its androidx.core 1.13.1 requires);
    // AGP 8.9 supports up to API 35.
    compileSdk = 34

    defaultConfig {
        applicationId = "org.fedpa.demo"
        minSdk = 26 // as build-apk.sh; executorch-android 1.4.1 itself needs 23
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
        // Checked against the bundle's manifest.json "toolchain" → "executorch" before ExecuTorch is used.
        buildConfigField("String", "EXECUTORCH_VERSION", "\"$executorchVersion\"")
        // No abiFilters: the executorch-android AAR carries libexecutorch.so for arm64-v8a and x86_64
        // (scripts/build_android_library.sh default ANDROID_ABIS at v1.4.1); on any other ABI the app
        // still installs and ranks/trains with the pure-Java engine, saying so on screen.
    }

    buildFeatures {
        buildConfig = true
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_1_8
        targetCompatibility = JavaVersion.VERSION_1_8
    }

    // The ExecuTorch runtime lives in its own folder so that build-apk.sh (no ExecuTorch AAR)
    // can compile src/main alone; here both are part of the app. test.sh compile-checks it against
    // tools/executorch-stub (the ExecuTorch 1.4.1 Java API it uses).
    sourceSets["main"].java.srcDir("src/executorch/java")
}

dependencies {
    implementation(project(":core"))
    // brings its native libraries and JNI helpers (fbjni, soloader) and androidx.core as transitive dependencies
    implementation("org.pytorch:executorch-android:$executorchVersion")
}
