plugins {
    id("com.android.application")
}

android {
    namespace = "org.fedpa.demo"
    compileSdk = 34

    defaultConfig {
        applicationId = "org.fedpa.demo"
        minSdk = 26
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_1_8
        targetCompatibility = JavaVersion.VERSION_1_8
    }

    // The ExecuTorch runtime lives in its own folder so that build-apk.sh (no ExecuTorch AAR)
    // can compile src/main alone; here both are part of the app.
    sourceSets["main"].java.srcDir("src/executorch/java")
}

dependencies {
    implementation(project(":core"))
    // brings its native libraries and JNI helpers (fbjni, soloader) as transitive dependencies
    implementation("org.pytorch:executorch-android:${property("executorchVersion")}")
}
