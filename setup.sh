#!/usr/bin/env bash
# One command sets up everything: a venv in .venv with the pinned dependencies and mmedge itself.
# llama-cpp-python compiles llama.cpp from source (about 13 CPU-minutes on 2 cores; pip caches the wheel).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
.venv/bin/python -m pip install --quiet "pip==26.3"
# torch alone and pinned first, so nothing later can pull a different (CUDA) build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -r requirements.lock
.venv/bin/python -m pip install --quiet --no-deps -e .
# The remote-device tests (`mmedge bench --remote`) start an OpenSSH server on loopback: Debian's
# openssh-server, installed when this runs as root with apt (elsewhere those tests skip, saying why).
if [ ! -x /usr/sbin/sshd ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q openssh-server >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q openssh-server >/dev/null 2>&1; } \
    || echo "setup: could not install openssh-server; the remote-device tests will be skipped"
fi
# The native runtime (native/): libmmedge + mmedge-run against the venv's executorch and llama.cpp
# libraries, and the same with AddressSanitizer for the hostile-input test job. The CLI reads PNG
# and JPEG through Debian's libpng / libjpeg when present (installed here when root with apt).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! { dpkg -s libpng-dev && dpkg -s libjpeg-dev; } >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q libpng-dev libjpeg-dev >/dev/null 2>&1 \
    || echo "setup: could not install libpng-dev/libjpeg-dev; mmedge-run will read PPM images only"
fi
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
GEN=$(command -v ninja >/dev/null && echo "-G Ninja" || true)
for variant in build:OFF build-asan:ON; do
  dir=native/${variant%%:*}
  cmake -S native -B "$dir" $GEN -DMMEDGE_SITE_PACKAGES="$SITE" -DMMEDGE_SANITIZE="${variant##*:}" >/dev/null
  cmake --build "$dir" >/dev/null
done
# aarch64 (Raspberry Pi): Debian's cross compiler and qemu-user (installed as root with apt), then the
# cross build of native/ with llama.cpp compiled for arm64 (about 8 CPU-minutes the first time;
# native/build-aarch64/deps keeps it). Without the cross compiler the aarch64 test skips and says why.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v aarch64-linux-gnu-g++ >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q g++-aarch64-linux-gnu qemu-user >/dev/null 2>&1 \
    || echo "setup: could not install g++-aarch64-linux-gnu/qemu-user; the aarch64 test will be skipped"
fi
if command -v aarch64-linux-gnu-g++ >/dev/null; then
  native/cross/build-aarch64.sh
fi
echo "setup complete: activate with 'source .venv/bin/activate'"
