#!/usr/bin/env bash
# Installs sparse_mlp with its test extras into .venv, then runs every check
# and test: formatting and lints, `cargo test` for the Rust core, `pytest` for
# the Python package. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet ".[test]"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test -p sparse-mlp-core --quiet
ruff check python tests benches
python -m pytest -q tests
# The stubs of the compiled module must match it.
python -m mypy.stubtest sparse_mlp._core
