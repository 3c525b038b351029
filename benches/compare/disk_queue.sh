#!/usr/bin/env bash
# Sightline's exporter queue on disk (fsync batch / always / never) against the memory queue:
# max closed-loop throughput with loadgen -> sightline (ownership enrichment) -> sink, the SUT
# pinned to CPU 0 and loadgen + sink to CPU 1 (a 2-core machine).
#
#   cargo build --release -p sightline -p sightline-bench-tools
#   [CONNECTIONS=4 INFLIGHT=2] benches/compare/disk_queue.sh [duration_s] [runs]
#
# Prints one line per run: storage, items/s accepted, items counted by the sink, refusals.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
DUR=${1:-15}
RUNS=${2:-2}
TMP=$(mktemp -d /tmp/sightline-diskq-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT
"$BIN/loadgen" --write-catalog "$TMP/catalog.yaml" >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Interleaved (run-major) so that load from elsewhere on the machine hits every variant alike.
for run in $(seq 1 "$RUNS"); do
  for storage in ${STORAGES:-memory disk_batch disk_always disk_never}; do
    SG=$(port); SH=$(port); SA=$(port); G=$(port); A=$(port)
    taskset -c 1 "$BIN/sink" --grpc 127.0.0.1:$SG --http 127.0.0.1:$SH --admin 127.0.0.1:$SA >"$TMP/sink.log" 2>&1 &
    SINK=$!
    case $storage in
      memory) queue="{}" ;;
      disk_*) rm -rf "$TMP/q"; queue="{ storage: disk, directory: \"$TMP/q\", fsync: ${storage#disk_} }" ;;
    esac
    cat >"$TMP/sl.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:$G" }
processors:
  ownership: { catalog: ["$TMP/catalog.yaml"] }
exporters:
  otlp/sink:
    endpoint: 127.0.0.1:$SG
    tls: { insecure: true }
    compression: none
    sending_queue: $queue
service:
  telemetry:
    metrics: { address: "127.0.0.1:$A" }
    logs: { level: warn }
  pipelines:
    traces: { receivers: [otlp], processors: [ownership], exporters: [otlp/sink] }
YAML
    taskset -c 0 "$BIN/sightline" run --config "$TMP/sl.yaml" >"$TMP/sl.log" 2>&1 &
    SL=$!
    for _ in $(seq 1 100); do curl -sf "127.0.0.1:$A/readyz" >/dev/null && break; sleep 0.1; done
    taskset -c 1 "$BIN/loadgen" --endpoint 127.0.0.1:$G --signal traces --items-per-request 500 \
      --connections ${CONNECTIONS:-4} --inflight ${INFLIGHT:-2} --duration ${DUR}s --warmup 3s --threads 1 --quiet \
      --sink-admin 127.0.0.1:$SA --json "$TMP/out.json" >/dev/null 2>&1 || true
    sleep 2
    python3 - "$storage" "$TMP/out.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
print(f"{sys.argv[1]:12s} {r['throughput']['items_per_s']:>12,.0f} items/s accepted  "
      f"refused={r['requests']['refused']} errors={r['requests']['errors']}  sink={r.get('sink', {}).get('traces', {}).get('items', '?')}")
PY
    kill $SL; wait $SL 2>/dev/null || true
    kill $SINK; wait $SINK 2>/dev/null || true
  done
done
