#!/usr/bin/env bash
# Builds the wheels users without Rust install, and an sdist, into OUT_DIR
# (default dist/): a manylinux2014 (glibc 2.17) abi3 wheel for x86-64 (any
# CPython >= 3.9; the kernels pick AVX-512, AVX2 or plain x86-64 code at run
# time), linked with zig so that no manylinux container is needed, and, when
# the aarch64 Rust target can be added, the same for aarch64 (cross-built:
# it cannot be run on this machine). Needs cargo and Python; installs maturin
# and ziglang (PyPI) into the active environment when they are missing.
#
#     bash scripts/build-wheel.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
mkdir -p "$out"
PYTHON=${PYTHON:-python3}

for module in maturin ziglang; do
    if ! "$PYTHON" -c "import $module" >/dev/null 2>&1; then
        echo "installing $module"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check "$module"
    fi
done
if ! "$PYTHON" -m maturin --version >/dev/null 2>&1; then
    maturin=(maturin)
else
    maturin=("$PYTHON" -m maturin)
fi

echo "x86_64: manylinux2014, abi3 (CPython >= 3.9)"
"${maturin[@]}" build --release --zig --compatibility manylinux2014 --target x86_64-unknown-linux-gnu \
    --out "$out" --quiet
"${maturin[@]}" sdist --out "$out" >/dev/null

if [ "${SKIP_AARCH64:-0}" != 1 ] && rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then
    echo "aarch64: manylinux2014, abi3 (cross-built; not run here)"
    "${maturin[@]}" build --release --zig --compatibility manylinux2014 --target aarch64-unknown-linux-gnu \
        --out "$out" --quiet
else
    echo "aarch64: skipped (SKIP_AARCH64=1, or rustup cannot add the aarch64-unknown-linux-gnu target)"
fi
ls -l "$out"
