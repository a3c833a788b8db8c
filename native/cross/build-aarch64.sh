#!/usr/bin/env bash
# Cross-build the native runtime for aarch64 Linux (a Raspberry Pi 4/5 on a 64-bit OS) into
# native/build-aarch64/dist: mmedge-run, libmmedge.so and the libraries they need (rpath $ORIGIN/lib),
# a folder to copy to the board. Needs Debian's g++-aarch64-linux-gnu (setup.sh installs it as root).
#
#   ExecuTorch: the executorch wheel for manylinux_2_28_aarch64 (the venv's version): its headers
#     and shared libraries, XNNPACK included. llama.cpp: the source llama-cpp-python vendors (the
#     venv's version), cross-compiled for armv8-a without CPU-specific flags (runs on a Pi 4's A72
#     and a Pi 5's A76). The CLI reads binary PPM images here (no arm64 libpng/libjpeg in the sysroot).
set -euo pipefail
cd "$(dirname "$0")/../.."
ET_VERSION=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("executorch").split("+")[0])')
LLAMA_VERSION=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')
OUT=native/build-aarch64
DEPS=$OUT/deps
TOOLCHAIN=$PWD/native/cross/aarch64-linux-gnu.cmake
GEN=$(command -v ninja >/dev/null && echo "-G Ninja" || true)
command -v aarch64-linux-gnu-g++ >/dev/null || { echo "build-aarch64: aarch64-linux-gnu-g++ is missing (apt-get install g++-aarch64-linux-gnu)"; exit 1; }
mkdir -p "$DEPS"

if [ ! -f "$DEPS/executorch/lib/libexecutorch.so" ]; then
  .venv/bin/python -m pip download -q "executorch==$ET_VERSION" --platform manylinux_2_28_aarch64 \
    --python-version 3.11 --only-binary=:all: --no-deps -d "$DEPS/wheels"
  rm -rf "$DEPS/et-wheel" && mkdir -p "$DEPS/et-wheel"
  .venv/bin/python -m zipfile -e "$DEPS"/wheels/executorch-"$ET_VERSION"-*aarch64.whl "$DEPS/et-wheel"
  rm -rf "$DEPS/executorch" && mkdir -p "$DEPS/executorch"
  mv "$DEPS/et-wheel/executorch/include" "$DEPS/et-wheel/executorch/lib" "$DEPS/executorch/"
  rm -rf "$DEPS/et-wheel"
fi

if [ ! -f "$DEPS/llama/lib/libllama.so" ]; then
  .venv/bin/python -m pip download -q "llama-cpp-python==$LLAMA_VERSION" --no-binary :all: --no-deps -d "$DEPS/sdist"
  rm -rf "$DEPS/src" && mkdir -p "$DEPS/src"
  tar xzf "$DEPS"/sdist/llama_cpp_python-"$LLAMA_VERSION".tar.gz -C "$DEPS/src"
  cmake -S "$DEPS/src/llama_cpp_python-$LLAMA_VERSION/vendor/llama.cpp" -B "$DEPS/llama-build" $GEN \
    -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PWD/$DEPS/llama" \
    -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_APP=OFF >/dev/null
  cmake --build "$DEPS/llama-build" --target install >/dev/null
  rm -rf "$DEPS/src" "$DEPS/llama-build"
fi

LLAMA_LIB=$DEPS/llama/lib
[ -d "$LLAMA_LIB" ] || LLAMA_LIB=$DEPS/llama/lib64
cmake -S native -B "$OUT/mmedge" $GEN -DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN" \
  -DMMEDGE_EXECUTORCH_ROOT="$PWD/$DEPS/executorch" -DMMEDGE_LLAMA_INCLUDE="$PWD/$DEPS/llama/include" \
  -DMMEDGE_LLAMA_LIB="$PWD/$LLAMA_LIB" -DMMEDGE_RPATH_ORIGIN=ON >/dev/null
cmake --build "$OUT/mmedge" --target mmedge-run mmedge-gguf-check >/dev/null

# The folder to copy to the board: the CLIs, libmmedge and every library it loads, found by $ORIGIN.
rm -rf "$OUT/dist" && mkdir -p "$OUT/dist/lib"
cp "$OUT/mmedge/mmedge-run" "$OUT/mmedge/mmedge-gguf-check" "$OUT/dist/"
cp -P "$OUT/mmedge/libmmedge.so" "$PWD/$LLAMA_LIB"/lib*.so* "$OUT/dist/lib/"  # -P: the .so.0 links stay links
for lib in executorch executorch_backend_xnnpack executorch_kernels_optimized executorch_threadpool; do
  cp "$DEPS/executorch/lib/lib$lib.so" "$OUT/dist/lib/"
done
echo "build-aarch64: $OUT/dist ($(du -sh "$OUT/dist" | cut -f1))"
