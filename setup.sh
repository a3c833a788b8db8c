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
echo "setup complete: activate with 'source .venv/bin/activate'"
