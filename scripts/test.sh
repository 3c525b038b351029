#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests' real peers need
# (idempotently), then runs formatting and lint checks, the Rust tests and the
# end-to-end tests against real SDK clients.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }

# One-shot builds gain nothing from incremental compilation, whose caches double the
# size of target/ (set CARGO_INCREMENTAL=1 to override).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# CI runs in a fresh clone every time: cargo's build directory lives outside it (as the fuzz
# build's does), so a warm machine rebuilds only this repository's crates, not the ~700
# dependencies. Bounded: wiped when it passes 40 GB. A developer's run uses ./target.
if [ "${CI:-}" = true ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$HOME/.cache/sightline/target"
  mkdir -p "$CARGO_TARGET_DIR"
  if [ "$(du -sk "$CARGO_TARGET_DIR" | cut -f1)" -gt $((40 * 1024 * 1024)) ]; then
    echo "the shared build directory is over 40 GB: starting it again"
    rm -rf "$CARGO_TARGET_DIR" && mkdir -p "$CARGO_TARGET_DIR"
  fi
fi
target="${CARGO_TARGET_DIR:-$root/target}"

# On a new machine: Go modules 4.2 GB + Go build cache 4.1 GB + target/ 2.5 GB + fuzz 1.3 GB.
step "disk space (a new machine needs about 12 GB free, mostly Go caches; a full disk shows up as a linker bus error)"
df -h . | tail -1
avail_kb=$(df -Pk . | awk 'NR==2 {print $4}')
if [ "${avail_kb:-0}" -lt $((12 * 1024 * 1024)) ]; then
  echo "warning: less than 12 GB free under $root; with empty caches the build may fail with 'No space left on device' or a linker bus error" >&2
fi

# The peers (Go-built servers, the Kafka jars, the Python environment) live in .peers/. CI runs
# in a fresh clone every time: there .peers is a link to a directory outside the clone, so a
# warm machine rebuilds none of them. Each is rebuilt when its inputs change (a content hash
# of tests/peers/<dir>, not file times: every file of a fresh clone is new).
if [ "${CI:-}" = true ] && [ ! -e .peers ]; then
  mkdir -p "$HOME/.cache/sightline/peers"
  ln -s "$HOME/.cache/sightline/peers" .peers
fi
mkdir -p .peers

inputs_sum() {  # inputs_sum DIR: one hash of every file under DIR (paths and contents)
  find "$1" -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

go_peer() {  # go_peer NAME DIR [PACKAGE [TAGS]]: .peers/NAME built from tests/peers/DIR, unless up to date
  local name=$1 dir=tests/peers/$2 pkg=${3:-.} tags=${4:-} sum
  sum=$(inputs_sum "$dir")
  if [ -x "$root/.peers/$name" ] && [ "$(cat "$root/.peers/.$name.sum" 2>/dev/null)" = "$sum" ]; then
    echo "up to date: .peers/$name"
    return
  fi
  # -s -w: no symbol table nor DWARF (nobody debugs the peers), a shorter single-threaded link.
  (cd "$dir" && go build -ldflags="-s -w" -tags="$tags" -o "$root/.peers/$name.tmp" "$pkg")
  mv "$root/.peers/$name.tmp" "$root/.peers/$name"
  echo "$sum" > "$root/.peers/.$name.sum"
}

step "build tools: a C compiler, make and perl (librdkafka, OpenSSL, zlib and zstd are built from source, ADR 24)"
if ! command -v cc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1 || ! command -v perl >/dev/null 2>&1; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q build-essential perl
fi

step "peers: Python OpenTelemetry SDK (PyPI)"
venv="$root/.peers/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt

step "peers: Chromium (Debian's package), for the status page test"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

# The Go-built peers take about 18 min from cold (2 cores), the Rust builds below about 27:
# both have long single-threaded phases (links, the largest crates), so the Go builds run in
# the background, at a lower priority, while cargo works; the benchmark smoke run, the first
# to need them, waits for them. Warm, every one is "up to date" in a second.
go_peers() {
  step "peers: Helm v3.22.0, built from its Go modules (the chart's lint and template tests)"
  go_peer helm helm helm.sh/helm/v3/cmd/helm

  step "peers: OpenTelemetry Collector v0.165.0, built from its Go modules"
  go_peer otelcol otelcol

  step "peers: OpenTelemetry Collector contrib v0.161.0 (attributes, filter, transform, probabilistic_sampler, redaction), built from its Go modules"
  go_peer otelcol161 otelcol161

  step "peers: VictoriaMetrics v1.151.0 and Jaeger v1.76.0, built from their Go modules"
  go_peer victoria-metrics victoriametrics github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics
  go_peer jaeger jaeger github.com/jaegertracing/jaeger/cmd/jaeger

  step "peers: VictoriaLogs v1.52.1 (Loki push API, OTLP logs, LogsQL), built from its Go modules"
  go_peer victoria-logs victorialogs github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs

  step "peers: Prometheus 3.16 (module v0.316.0; remote write 1.0 and 2.0 receiver), built from its Go modules"
  # remove_all_sd: no service discovery but static, file and HTTP (the tests push to it), so
  # none of the cloud SDKs and Kubernetes clients the others pull in are compiled.
  go_peer prometheus prometheus github.com/prometheus/prometheus/cmd/prometheus remove_all_sd

  step "peers: kube-apiserver v1.37.2 with an embedded etcd, built from the Kubernetes Go modules (the Kubernetes ownership tests)"
  # The biggest peer (about 3.5 min cold on 2 cores, alone).
  go_peer kube-apiserver kube-apiserver
}
step "peers: the Go-built servers, in the background (their log follows the fuzz build)"
go_log=$(mktemp "${TMPDIR:-/tmp}/sightline-go-peers.XXXXXX")
# nice 10: the Rust tests, which run real servers on loopback, come first when they overlap.
# A process group of its own (set -m), so that an early failure below stops every Go build.
set -m
(renice -n 10 -p "$BASHPID" >/dev/null || true; go_peers) >"$go_log" 2>&1 &
go_pid=$!
set +m
trap 'if [ -n "${go_pid:-}" ]; then kill -TERM -- "-$go_pid" 2>/dev/null || true; rm -f "$go_log"; fi' EXIT
kas="$root/.peers/kube-apiserver"

step "peers: Apache Kafka 4.4.0 broker (KRaft), its jars from Maven Central (the Kafka tests)"
# A JDK and Maven from Debian when missing; the jars are copied again only when the pom changes.
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q default-jdk-headless maven
fi
kafka_lib="$root/.peers/kafka/lib"
kafka_sum=$(inputs_sum tests/peers/kafka)
if [ -f "$kafka_lib/kafka_2.13-4.4.0.jar" ] && [ "$(cat "$root/.peers/.kafka.sum" 2>/dev/null)" = "$kafka_sum" ]; then
  echo "up to date: $kafka_lib"
else
  rm -rf "$kafka_lib"
  (cd tests/peers/kafka && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$kafka_lib" -DincludeScope=runtime)
  echo "$kafka_sum" > "$root/.peers/.kafka.sum"
fi

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build the binaries the end-to-end tests run (sightline, loadgen, sink; profile ci: release without LTO)"
cargo build --profile ci --locked -p sightline -p sightline-bench-tools
export SIGHTLINE_BIN="$target/ci/sightline" LOADGEN_BIN="$target/ci/loadgen" SINK_BIN="$target/ci/sink"

step "Rust tests (unit, component and end-to-end with the Rust SDK)"
cargo test --workspace --locked

# CI fuzzes each target for 5 s (its time budget; the seed corpus and the first minutes of
# mutations find the shallow bugs); a developer's run, 10 s. FUZZ_SECONDS overrides both.
if [ "${CI:-}" = true ]; then
  export FUZZ_SECONDS="${FUZZ_SECONDS:-5}"
fi
step "fuzzing: build the fuzz targets (see fuzz/README.md)"
FUZZ_BUILD_ONLY=1 ./scripts/fuzz.sh

step "peers: the Go-built servers (built in the background since the start)"
go_rc=0
wait "$go_pid" || go_rc=$?
go_pid=
cat "$go_log"
rm -f "$go_log"
if [ "$go_rc" -ne 0 ]; then
  echo "failed: building the Go peers exited $go_rc" >&2
  exit 1
fi

step "benchmark harness smoke run (seconds; the full comparison is benches/compare/compare.py)"
python3 benches/compare/compare.py --smoke

# The fuzz runs (one core each, for FUZZ_SECONDS per target) go on in the background, at the
# lowest priority (nice 19: they take only CPU time the tests leave idle), while the
# end-to-end tests, which mostly wait on their peers, run; their output follows the tests'.
step "end-to-end tests with the Python SDK and the OpenTelemetry Collector; fuzzing each decoder's target for ${FUZZ_SECONDS:-10} s on the seed corpus alongside"
fuzz_log=$(mktemp "${TMPDIR:-/tmp}/sightline-fuzz-log.XXXXXX")
nice -n 19 ./scripts/fuzz.sh >"$fuzz_log" 2>&1 &
fuzz_pid=$!
set +e
OTELCOL_BIN="$root/.peers/otelcol" OTELCOL161_BIN="$root/.peers/otelcol161" PROMETHEUS_BIN="$root/.peers/prometheus" HELM_BIN="$root/.peers/helm" KUBE_APISERVER_BIN="$kas" \
  "$venv/bin/python" -m pytest -q --durations=15 tests/python
tests_rc=$?
wait "$fuzz_pid"
fuzz_rc=$?
set -e
step "fuzzing (ran alongside the end-to-end tests)"
cat "$fuzz_log"
rm -f "$fuzz_log"
if [ "$tests_rc" -ne 0 ] || [ "$fuzz_rc" -ne 0 ]; then
  echo "failed: end-to-end tests exit $tests_rc, fuzzing exit $fuzz_rc" >&2
  exit 1
fi
