#!/usr/bin/env bash
# Builds the llama.cpp baseline for `npm run bench` into bench/.cache/llama.cpp (once; reruns skip done steps).
#
# The llama.cpp tree comes from the llama-cpp-python source distribution on PyPI, which vendors a pinned
# llama.cpp commit (see bench/README.md), so the baseline is reproducible without a GitHub checkout.
#
# usage: bash bench/setup_llama_cpp.sh [native|avx2]   (env: JOBS=N, default: all cores)
#   native (the default): GGML_NATIVE=ON into build/, everything this CPU has (AVX-512, AVX512_BF16, ...).
#   avx2: GGML_NATIVE=OFF (SSE4.2, AVX, AVX2, FMA, F16C, BMI2; no AVX-512) into build-avx2/, what llama.cpp runs on a
#   CPU without AVX-512; `npm run bench -- --isa avx2` sets it against llama4-ts's AVX2 kernels.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="$HERE/.cache/llama.cpp"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
# The llama.cpp commit llama-cpp-python $VERSION vendors (upstream release b11312); checked below so a
# different sdist fails loudly.
EXPECTED_COMMIT="0c1e57098bba43ac29e6e3b677cdceebdd22334f"
BUILD_NUMBER=11312
SRC="$CACHE/llama_cpp_python-$VERSION/vendor/llama.cpp"
ISA="${1:-native}"
case "$ISA" in
  native) BUILD="$CACHE/build"; NATIVE=ON ;;
  avx2) BUILD="$CACHE/build-avx2"; NATIVE=OFF ;;
  *) echo "usage: bash bench/setup_llama_cpp.sh [native|avx2]" >&2; exit 2 ;;
esac
JOBS="${JOBS:-$(nproc)}"

mkdir -p "$CACHE"

if [ ! -f "$CACHE/llama_cpp_python-$VERSION.tar.gz" ]; then
  # --no-binary: the sdist is the only artifact that carries the C++ sources.
  python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$CACHE"
fi

if [ ! -f "$SRC/CMakeLists.txt" ]; then
  tar -xzf "$CACHE/llama_cpp_python-$VERSION.tar.gz" -C "$CACHE"
fi

# The sdist keeps the submodule's git metadata; its HEAD is the vendored commit.
COMMIT="$(cat "$CACHE/llama_cpp_python-$VERSION/.git/modules/vendor/llama.cpp/HEAD")"
if [ "$COMMIT" != "$EXPECTED_COMMIT" ]; then
  if [ -z "${LLAMA_CPP_PYTHON_VERSION:-}" ]; then
    echo "unexpected llama.cpp commit $COMMIT (expected $EXPECTED_COMMIT)" >&2
    exit 1
  fi
  BUILD_NUMBER=0  # unknown for another sdist
fi

GENERATOR=()
if [ ! -f "$BUILD/CMakeCache.txt" ] && command -v ninja >/dev/null; then GENERATOR=(-G Ninja); fi
# Configuring again is cheap and a no-op for the build when nothing changed.
# The vendored clone is shallow, so git's commit count would be a wrong build number: pass upstream's
# release number and the short commit instead. Static libraries keep the binaries self-contained.
cmake -S "$SRC" -B "$BUILD" "${GENERATOR[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE="$NATIVE" \
  -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_NUMBER="$BUILD_NUMBER" \
  -DLLAMA_BUILD_COMMIT="${COMMIT:0:9}" \
  -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=ON \
  -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF >/dev/null

# llama-simple (examples/) only serves the greedy-token cross-check; it is one small file.
cmake --build "$BUILD" --config Release -j "$JOBS" --target llama-bench llama-quantize llama-simple

echo "llama.cpp $COMMIT built in $BUILD/bin"
