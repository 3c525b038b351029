#!/usr/bin/env bash
# The cost of fan-out at a fixed offered rate: loadgen -> sightline (ownership enrichment) ->
# 1 or 3 `otlp` exporters -> sink, open loop (no back-pressure, unlike the closed-loop
# maximum of compare.py's fanout3), Sightline pinned to CPU 0 and loadgen + sink to CPU 1.
# Reads Sightline's user and system CPU time from /proc/<pid>/stat around the load, so the
# kernel's share (loopback TCP send of each exporter's copy) is separated from user space.
#
#   cargo build --release -p sightline -p sightline-bench-tools
#   benches/compare/fanout_cost.sh [rate_spans_per_s] [runs] [duration_s]
#
# Prints one line per run: exporters, user s, system s, total CPU s per million spans, peak
# RSS (VmHWM), items accepted, items counted by the sink; then the medians. At a low rate
# (e.g. 100000) it is also the steady-state memory measurement.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
RATE=${1:-1000000}
RUNS=${2:-5}
DUR=${3:-10}
TMP=$(mktemp -d /tmp/sightline-fanout-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT
"$BIN/loadgen" --write-catalog "$TMP/catalog.yaml" >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks=$(getconf CLK_TCK)
: >"$TMP/results"

# Interleaved (run-major) so that load from elsewhere on the machine hits both variants alike.
for run in $(seq 1 "$RUNS"); do
  for n in 1 3; do
    SG=$(port); SH=$(port); SA=$(port); G=$(port); A=$(port)
    taskset -c 1 "$BIN/sink" --grpc 127.0.0.1:$SG --http 127.0.0.1:$SH --admin 127.0.0.1:$SA >"$TMP/sink.log" 2>&1 &
    SINK=$!
    exporters="" names=""
    for i in $(seq 0 $((n - 1))); do
      exporters+=$'\n'"  otlp/sink$i: { endpoint: \"127.0.0.1:$SG\", tls: { insecure: true }, compression: none }"
      names+="${names:+, }otlp/sink$i"
    done
    cat >"$TMP/sl.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:$G" }
processors:
  ownership: { catalog: ["$TMP/catalog.yaml"] }
exporters:$exporters
service:
  telemetry:
    metrics: { address: "127.0.0.1:$A" }
    logs: { level: warn }
  pipelines:
    traces: { receivers: [otlp], processors: [ownership], exporters: [$names] }
YAML
    taskset -c 0 "$BIN/sightline" run --config "$TMP/sl.yaml" >"$TMP/sl.log" 2>&1 &
    SL=$!
    for _ in $(seq 100); do
      curl -sf "http://127.0.0.1:$A/readyz" >/dev/null 2>&1 && curl -sf "http://127.0.0.1:$SA/healthz" >/dev/null 2>&1 && break
      sleep 0.1
    done
    read -r u0 s0 < <(awk '{print $14, $15}' /proc/$SL/stat)
    taskset -c 1 "$BIN/loadgen" --endpoint 127.0.0.1:$G --protocol grpc --signal traces --span-size small \
      --items-per-request 500 --connections 4 --duration "$((DUR * 1000))ms" --warmup 0ms --rate "$RATE" \
      --json "$TMP/lg.json" --quiet >/dev/null
    read -r u1 s1 < <(awk '{print $14, $15}' /proc/$SL/stat)
    hwm_kb=$(awk '/^VmHWM:/ {print $2}' /proc/$SL/status)
    sleep 1
    sink_items=$(curl -s "http://127.0.0.1:$SA/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["traces"]["items"])')
    python3 - "$TMP/lg.json" "$n" "$u0" "$s0" "$u1" "$s1" "$ticks" "$sink_items" "$hwm_kb" <<'PY' | tee -a "$TMP/results"
import json, sys
r = json.load(open(sys.argv[1]))
n, u0, s0, u1, s1, hz, sink, hwm = (int(x) for x in sys.argv[2:10])
acc = r["items"]["accepted"]
user, system = (u1 - u0) / hz, (s1 - s0) / hz
print(f"exporters={n} user_s={user:.2f} sys_s={system:.2f} cpu_s_per_M={(user + system) / acc * 1e6:.3f} peak_rss_mib={hwm / 1024:.1f} accepted={acc} sink_items={sink}")
PY
    kill $SL $SINK 2>/dev/null || true
    wait $SL $SINK 2>/dev/null || true
  done
done

python3 - "$TMP/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(x.split("=") for x in line.split())
    rows.setdefault(kv["exporters"], []).append(kv)
med = {n: {k: statistics.median(float(r[k]) for r in rs) for k in ("user_s", "sys_s", "cpu_s_per_M", "peak_rss_mib")} for n, rs in rows.items()}
for n, m in sorted(med.items()):
    print(f"median exporters={n} user_s={m['user_s']:.2f} sys_s={m['sys_s']:.2f} cpu_s_per_M={m['cpu_s_per_M']:.3f} peak_rss_mib={m['peak_rss_mib']:.1f}")
if "1" in med and "3" in med:
    a, b = med["1"], med["3"]
    print(f"3 vs 1 exporter: total {b['cpu_s_per_M'] / a['cpu_s_per_M']:.2f}x, user {b['user_s'] / a['user_s']:.2f}x, system {b['sys_s'] / a['sys_s']:.2f}x")
PY
