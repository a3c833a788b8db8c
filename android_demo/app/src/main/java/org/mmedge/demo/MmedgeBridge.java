package org.mmedge.demo;

/**
 * The Java face of the native runtime's C ABI (native/include/mmedge.h), through JNI
 * (app/src/main/cpp/mmedge_jni.cpp). Kotlin calls it as it is. One instance = one opened bundle;
 * use it from one thread at a time.
 */
public final class MmedgeBridge implements AutoCloseable {
    /** Streaming: each generated token's id and text; return false to stop. */
    public interface TokenListener {
        boolean onToken(int token, String text);
    }

    /** A refused bundle or input: the C status name (MMEDGE_ERR_...) and what to do. */
    public static final class MmedgeException extends Exception {
        public final String status;

        public MmedgeException(String status, String message) {
            super(status + ": " + message);
            this.status = status;
        }
    }

    static {
        System.loadLibrary("mmedge_jni");
    }

    private long handle;

    /** Opens and checks the bundle folder (e.g. pushed with adb to the app's files dir). */
    public MmedgeBridge(String bundleDir, int threads, int contextLength) throws MmedgeException {
        handle = nativeOpen(bundleDir, threads, contextLength);
    }

    /**
     * Answers `prompt` about images given as packed RGB bytes (3 per pixel, row after row).
     * Returns the generated token ids; `listener` gets them as they come.
     */
    public int[] generate(byte[][] rgb, int[] widths, int[] heights, String prompt, int maxNewTokens,
                          float temperature, long seed, TokenListener listener) throws MmedgeException {
        if (handle == 0) throw new IllegalStateException("closed");
        // Real UTF-8, not JNI's modified UTF-8 (which differs for NUL and characters beyond U+FFFF).
        byte[] utf8 = prompt.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        return nativeGenerate(handle, rgb, widths, heights, utf8, maxNewTokens, temperature, seed, listener);
    }

    /** From another thread: stop the running generate() (it returns the tokens so far). */
    public void stop() {
        if (handle != 0) nativeStop(handle);
    }

    /** The bundle's image marker ("<image>"): one per image in the prompt, or none. */
    public String imageMarker() {
        return nativeImageMarker(handle);
    }

    @Override
    public void close() {
        if (handle != 0) {
            nativeClose(handle);
            handle = 0;
        }
    }

    private static native long nativeOpen(String bundleDir, int threads, int contextLength) throws MmedgeException;

    private static native int[] nativeGenerate(long handle, byte[][] rgb, int[] widths, int[] heights, byte[] promptUtf8,
                                               int maxNewTokens, float temperature, long seed,
                                               TokenListener listener) throws MmedgeException;

    private static native String nativeImageMarker(long handle);

    private static native void nativeStop(long handle);

    private static native void nativeClose(long handle);
}
