#!/usr/bin/env bash
# Installs sparse_mlp with its test extras into .venv, then runs every check
# and test: formatting and lints, `cargo test` for the Rust core (and its
# kernels under Miri), `pytest` for the Python package. This is the README's
# test command and what CI runs. It installs only what is missing and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }
# Runs a command and prints its summary lines ("test result: ..."); all of
# its output when it fails.
summarized() {
    local log status=0
    log=$(mktemp)
    "$@" >"$log" 2>&1 || status=$?
    if [ "$status" -eq 0 ]; then grep -E '^test result' "$log" || true; else cat "$log"; fi
    rm -f "$log"
    return "$status"
}

PYTHON=${PYTHON:-python3}
step "Python environment (.venv) and the package with its test extras"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    echo "made .venv"
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --disable-pip-version-check ".[test]"

step "Rust: formatting, clippy, cargo test"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
summarized cargo test -p sparse-mlp-core --quiet

# The unsafe code (SIMD dispatch, prefetch, SSE reductions, the backward
# pass's disjoint gradient writes) under Miri on small cases, with the
# baseline kernels and again with the AVX2 ones. Needs nightly's miri and
# rust-src: the components are added when missing (the toolchain is not updated).
step "Miri: the kernels' unsafe code"
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "installing the nightly toolchain with miri and rust-src"
    rustup toolchain install nightly --profile minimal --component miri,rust-src >/dev/null 2>&1 || true
fi
missing=$(for c in miri rust-src; do
    rustup +nightly component list --installed 2>/dev/null | grep -q "^$c" || echo "$c"; done)
if [ -n "$missing" ]; then
    echo "adding nightly's missing components:" $missing
    # shellcheck disable=SC2086
    rustup component add --toolchain nightly $missing >/dev/null 2>&1 || true
fi
if cargo +nightly miri --version >/dev/null 2>&1; then
    # -Zmiri-permissive-provenance: rayon's work queues (crossbeam-epoch)
    # cast integers to pointers, which Miri reports at every thread start;
    # our own code does not (the kernels keep pointer provenance).
    export MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-ignore-leaks -Zmiri-permissive-provenance"
    cargo +nightly miri setup >/dev/null 2>&1
    for flags in "" "-C target-feature=+avx2,+fma"; do
        echo "kernels under Miri${flags:+ with $flags}"
        summarized env RUSTFLAGS="$flags" cargo +nightly miri test -p sparse-mlp-core --lib --quiet \
            -- kernels:: simd:: precision::
    done
    unset MIRIFLAGS
else
    echo "WARNING: nightly's miri is not available here; the Miri checks are skipped"
fi

step "Python: ruff, pytest, stubs"
ruff check --quiet python tests benches
python -m pytest -q -p no:cacheprovider tests
# The stubs of the compiled module must match it.
python -m mypy.stubtest sparse_mlp._core
