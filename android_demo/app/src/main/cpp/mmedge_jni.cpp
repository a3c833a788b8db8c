// JNI bridge: org.mmedge.demo.MmedgeBridge's native methods over the C ABI (mmedge.h). Plain C++
// and JNI only, so it builds for the host JVM (the tests drive it with JDK 17) as for Android (NDK).
// Every failure becomes a MmedgeBridge.MmedgeException (status name + message); nothing else leaves.
#include <jni.h>

#include <algorithm>
#include <string>
#include <vector>

#include "mmedge.h"

namespace {

void throw_mmedge(JNIEnv *env, mmedge_status status, const std::string &message) {
    jclass cls = env->FindClass("org/mmedge/demo/MmedgeBridge$MmedgeException");
    if (!cls) return;  // NoClassDefFoundError is already pending
    jmethodID ctor = env->GetMethodID(cls, "<init>", "(Ljava/lang/String;Ljava/lang/String;)V");
    jstring name = env->NewStringUTF(mmedge_status_name(status));
    jstring text = env->NewStringUTF(message.c_str());
    auto *error = static_cast<jthrowable>(env->NewObject(cls, ctor, name, text));
    if (error) env->Throw(error);
}

// Java strings are modified UTF-8; token text is real UTF-8 (it may hold 4-byte characters), so it
// crosses as bytes and becomes a String through the String(byte[], "UTF-8") constructor.
jstring utf8_string(JNIEnv *env, const char *text) {
    size_t n = std::char_traits<char>::length(text);
    jbyteArray bytes = env->NewByteArray(static_cast<jsize>(n));
    env->SetByteArrayRegion(bytes, 0, static_cast<jsize>(n), reinterpret_cast<const jbyte *>(text));
    jclass string_class = env->FindClass("java/lang/String");
    jmethodID ctor = env->GetMethodID(string_class, "<init>", "([BLjava/lang/String;)V");
    jstring out = static_cast<jstring>(env->NewObject(string_class, ctor, bytes, env->NewStringUTF("UTF-8")));
    env->DeleteLocalRef(bytes);
    return out;
}

struct Listener {
    JNIEnv *env;
    jobject listener;
    jmethodID on_token;
};

int forward_token(int32_t token, const char *text, void *data) {
    auto *l = static_cast<Listener *>(data);
    if (!l->listener) return 1;
    jstring piece = utf8_string(l->env, text);
    jboolean go_on = l->env->CallBooleanMethod(l->listener, l->on_token, static_cast<jint>(token), piece);
    l->env->DeleteLocalRef(piece);
    if (l->env->ExceptionCheck()) return 0;  // the listener threw: stop, and let the exception surface
    return go_on ? 1 : 0;
}

mmedge_context *as_context(jlong handle) { return reinterpret_cast<mmedge_context *>(handle); }

}  // namespace

extern "C" {

JNIEXPORT jlong JNICALL Java_org_mmedge_demo_MmedgeBridge_nativeOpen(JNIEnv *env, jclass, jstring bundle_dir, jint threads,
                                                                      jint context_length) {
    if (!bundle_dir) {
        throw_mmedge(env, MMEDGE_ERR_INVALID_ARGUMENT, "bundleDir is null");
        return 0;
    }
    const char *dir = env->GetStringUTFChars(bundle_dir, nullptr);
    mmedge_params params = mmedge_params_default();
    params.n_threads = threads;
    if (context_length > 0) params.n_ctx = context_length;
    mmedge_context *ctx = nullptr;
    mmedge_status status = mmedge_open(dir, &params, &ctx);
    env->ReleaseStringUTFChars(bundle_dir, dir);
    if (status != MMEDGE_OK) {
        throw_mmedge(env, status, mmedge_last_error());
        return 0;
    }
    return reinterpret_cast<jlong>(ctx);
}

JNIEXPORT jintArray JNICALL Java_org_mmedge_demo_MmedgeBridge_nativeGenerate(
    JNIEnv *env, jclass, jlong handle, jobjectArray rgb, jintArray widths, jintArray heights, jbyteArray prompt,
    jint max_new_tokens, jfloat temperature, jlong seed, jobject listener) {
    if (!handle || !prompt || !rgb || !widths || !heights) {
        throw_mmedge(env, MMEDGE_ERR_INVALID_ARGUMENT, "handle, images, widths, heights and prompt must not be null");
        return nullptr;
    }
    jsize n = env->GetArrayLength(rgb);
    if (env->GetArrayLength(widths) != n || env->GetArrayLength(heights) != n) {
        throw_mmedge(env, MMEDGE_ERR_INVALID_ARGUMENT, "images, widths and heights differ in length");
        return nullptr;
    }
    std::vector<jint> w(n), h(n);
    env->GetIntArrayRegion(widths, 0, n, w.data());
    env->GetIntArrayRegion(heights, 0, n, h.data());
    std::vector<std::vector<uint8_t>> pixels(n);
    std::vector<mmedge_image> images(n);
    for (jsize i = 0; i < n; ++i) {
        auto array = static_cast<jbyteArray>(env->GetObjectArrayElement(rgb, i));
        if (!array) {
            throw_mmedge(env, MMEDGE_ERR_IMAGE, "images[" + std::to_string(i) + "] is null");
            return nullptr;
        }
        jsize len = env->GetArrayLength(array);
        // The C ABI reads width * 3 * height bytes: a shorter array is refused here, not read past.
        if (w[i] > 0 && h[i] > 0 && static_cast<int64_t>(len) < static_cast<int64_t>(w[i]) * h[i] * 3) {
            throw_mmedge(env, MMEDGE_ERR_IMAGE, "images[" + std::to_string(i) + "] holds " + std::to_string(len) +
                                                     " bytes, " + std::to_string(w[i]) + "x" + std::to_string(h[i]) +
                                                     " RGB needs " + std::to_string(int64_t(w[i]) * h[i] * 3));
            return nullptr;
        }
        pixels[i].resize(static_cast<size_t>(len));
        env->GetByteArrayRegion(array, 0, len, reinterpret_cast<jbyte *>(pixels[i].data()));
        env->DeleteLocalRef(array);
        images[i] = {pixels[i].data(), w[i], h[i], w[i] * 3};
    }
    mmedge_generation_params params = mmedge_generation_params_default();
    params.max_new_tokens = max_new_tokens;
    params.temperature = temperature;
    params.seed = static_cast<uint64_t>(seed);
    Listener l{env, listener, nullptr};
    if (listener) l.on_token = env->GetMethodID(env->GetObjectClass(listener), "onToken", "(ILjava/lang/String;)Z");
    std::vector<int32_t> tokens(max_new_tokens > 0 ? max_new_tokens : 0);
    int32_t count = 0;
    std::string prompt_text(static_cast<size_t>(env->GetArrayLength(prompt)), '\0');
    env->GetByteArrayRegion(prompt, 0, static_cast<jsize>(prompt_text.size()), reinterpret_cast<jbyte *>(&prompt_text[0]));
    if (prompt_text.find('\0') != std::string::npos) {
        throw_mmedge(env, MMEDGE_ERR_PROMPT, "the prompt holds a NUL character");
        return nullptr;
    }
    mmedge_status status = mmedge_generate(as_context(handle), images.data(), n, prompt_text.c_str(), &params, forward_token, &l,
                                           tokens.data(), static_cast<int32_t>(tokens.size()), &count, nullptr);
    if (env->ExceptionCheck()) return nullptr;  // the listener's own exception
    if (status != MMEDGE_OK && status != MMEDGE_ERR_STOPPED) {
        throw_mmedge(env, status, mmedge_last_error());
        return nullptr;
    }
    count = std::min<int32_t>(count, static_cast<int32_t>(tokens.size()));
    jintArray out = env->NewIntArray(count);
    env->SetIntArrayRegion(out, 0, count, reinterpret_cast<const jint *>(tokens.data()));
    return out;
}

JNIEXPORT jstring JNICALL Java_org_mmedge_demo_MmedgeBridge_nativeImageMarker(JNIEnv *env, jclass, jlong handle) {
    return env->NewStringUTF(mmedge_image_marker(as_context(handle)));
}

JNIEXPORT void JNICALL Java_org_mmedge_demo_MmedgeBridge_nativeStop(JNIEnv *, jclass, jlong handle) {
    mmedge_stop(as_context(handle));
}

JNIEXPORT void JNICALL Java_org_mmedge_demo_MmedgeBridge_nativeClose(JNIEnv *, jclass, jlong handle) {
    mmedge_close(as_context(handle));
}

}  // extern "C"
