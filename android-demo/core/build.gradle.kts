// Plain Java 8: no android.*, no lambdas or streams, so the same classes run on the JVM (tests),
// in the Gradle app, and through Debian's dx in build-apk.sh.
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_1_8
    targetCompatibility = JavaVersion.VERSION_1_8
}

dependencies {
    // org.json is part of Android; on the JVM the same implementation comes from this artifact.
    compileOnly("com.vaadin.external.google:android-json:0.0.20131108.vaadin1")
    testImplementation("com.vaadin.external.google:android-json:0.0.20131108.vaadin1")
    testImplementation("junit:junit:4.13.2")
}

// The tests need reference data, a bundle signed with a publisher key (fedpa.publisherKey: the path
// of its publisher.pub), an aggregator and the app's ExecuTorch code compiled against
// tools/executorch-stub and -fake: android-demo/test.sh prepares all of them and passes them as
// these system properties (a bare `gradle test` skips nothing silently: the tests fail naming the
// missing property).
tasks.test {
    for (p in listOf("fedpa.fixtures", "fedpa.bundle", "fedpa.python", "fedpa.server", "fedpa.model", "fedpa.admin",
                     "fedpa.executorch.version", "fedpa.executorch.app", "fedpa.executorch.stub", "fedpa.executorch.fake",
                     "fedpa.publisherKey")) {
        System.getProperty(p)?.let { systemProperty(p, it) }
    }
}
