// The demo app: photo + prompt -> streamed answer, through MmedgeBridge (JNI) over libmmedge.
// Native libraries: built by the NDK from app/src/main/cpp/CMakeLists.txt against ExecuTorch and
// llama.cpp built for Android (see ../README.md for the two -D paths below).
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.mmedge.demo"
    compileSdk = 35
    ndkVersion = "27.2.12479018"

    defaultConfig {
        applicationId = "org.mmedge.demo"
        minSdk = 29
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        ndk { abiFilters += listOf("arm64-v8a") }
        externalNativeBuild {
            cmake {
                arguments += listOf(
                    "-DEXECUTORCH_ANDROID_ROOT=" + (project.findProperty("executorchAndroidRoot") ?: ""),
                    "-DLLAMA_ANDROID_ROOT=" + (project.findProperty("llamaAndroidRoot") ?: ""),
                )
            }
        }
    }
    externalNativeBuild {
        cmake { path = file("src/main/cpp/CMakeLists.txt") }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
}

dependencies {
    implementation("androidx.activity:activity-ktx:1.9.3")
    implementation("androidx.appcompat:appcompat:1.7.0")
}
