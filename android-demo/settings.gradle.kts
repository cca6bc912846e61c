// Android Studio project of the FedPA demo app. Needs the Android SDK and Google's Maven repo,
// which this project's build machines do not have: there, build-apk.sh builds the APK with
// Debian's tools and test.sh runs the core's tests (see README.md).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "fedpa-demo"
include(":core", ":app")
