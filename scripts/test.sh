#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests' real peers need
# (idempotently), then runs formatting and lint checks, the Rust tests and the
# end-to-end tests against real SDK clients.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "peers: Python OpenTelemetry SDK (PyPI)"
venv="$root/.peers/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt

step "peers: OpenTelemetry Collector v0.165.0, built from its Go modules"
(cd tests/peers/otelcol && go build -o "$root/.peers/otelcol" .)

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build the release binary used by the end-to-end tests"
cargo build --release --locked -p sightline

step "Rust tests (unit, component and end-to-end with the Rust SDK)"
cargo test --workspace --locked

step "benchmark harness smoke run (seconds; the full comparison is benches/compare/compare.py)"
python3 benches/compare/compare.py --smoke

step "end-to-end tests with the Python SDK and the OpenTelemetry Collector"
SIGHTLINE_BIN="$root/target/release/sightline" OTELCOL_BIN="$root/.peers/otelcol" \
  "$venv/bin/python" -m pytest -q tests/python
