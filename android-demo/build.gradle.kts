// Versions that work together (each pairing documented; see README.md "Gradle build"):
//  * Android Gradle plugin 8.9.0 + Gradle 8.11.1 (gradle/wrapper): AGP 8.9's minimum and default
//    Gradle is 8.11.1, with JDK 17 and SDK Build Tools 35.0.0
//    (https://developer.android.com/build/releases/agp-8-9-0-release-notes).
//  * org.pytorch:executorch-android 1.4.1 (gradle.properties) is itself built with AGP 8.9.0 and
//    Gradle 8.11.1, compileSdk 34, minSdk 23 (pytorch/executorch tag v1.4.1:
//    extension/android/build.gradle, extension/android/executorch_android/build.gradle,
//    extension/android/gradle/wrapper/gradle-wrapper.properties).
plugins {
    id("com.android.application") version "8.9.0" apply false
}
