#!/usr/bin/env python3
"""Side-by-side benchmark: Sightline vs the OpenTelemetry Collector, same corpus, same sink.

    python3 benches/compare/compare.py               # full run (about 20-30 minutes)
    python3 benches/compare/compare.py --quick       # smoke run (a few seconds per case)

What it does, per signal and scenario, for each system under test (SUT):
  * builds Sightline (profile `dist`: release + fat LTO), the load generator and the counting
    sink (release), and the collector from its Go modules (tests/peers/otelcol, v0.165.0);
  * pins the SUT to CPU 0 and the load generator + sink to CPU 1 (`taskset`);
  * max throughput: closed-loop load for --duration; the result counts only when the SUT
    refused nothing and the sink received every accepted item;
  * CPU seconds per million items (utime+stime of the SUT over the measured window), peak RSS
    (VmHWM);
  * latency: open loop at 50% of the collector's max rate, loadgen send -> sink receive
    (stamped in the first item), minus the same rate sent straight to the sink (baseline).
Several runs per case, the systems' runs interleaved (run 1 of each system back to back, then
run 2, ...); the medians are reported, with Sightline/collector ratios, and under the table the
CPU ratio of each pair of runs.

Scenarios: defaults (enrich with each system's default exporter compression, gzip), passthrough,
enrich, zstd (enrich, zstd out), client_gzip (enrich, the client gzips its requests), fanout3 (three OTLP
exporters, uncompressed; not in the default set: fanout3_gzip, the same with the default gzip), and remote_write (metrics
only): OTLP in, ownership, Prometheus remote write out to the sink's /api/v1/write (the
settings of both sides are under REMOTE_WRITE below). For example:

    python3 benches/compare/compare.py --signals metrics --scenarios remote_write --out /tmp/rw.md

disk_batch and disk_always (traces only, not in the default set): `enrich` with the exporter's
queue on disk, Sightline's disk queue vs the collector's persistent queue (file_storage); the
pairing is under DISK_QUEUE below. For example:

    python3 benches/compare/compare.py --signals traces --scenarios enrich,disk_batch,disk_always --out /tmp/disk.md

transform and filter (traces only, not in the default set): `enrich` plus OTTL statements or
conditions typical of production, the same text on both sides (ITEM_PROCESSORS below); the
collector side is the contrib v0.161.0 peer. For example:

    python3 benches/compare/compare.py --signals traces --scenarios enrich,transform,filter --out /tmp/ottl.md

loadbalancing (traces only, not in the default set): an agent spreading traces over three
gateways by trace id (see loadbalancing_exporter below):

    python3 benches/compare/compare.py --signals traces --scenarios enrich,loadbalancing --out /tmp/lb.md

redact (logs only, not in the default set): `enrich` plus redaction, Sightline's `policy`
processor against the collector's `redaction` processor (REDACT below; the v0.161.0 peer):

    python3 benches/compare/compare.py --signals logs --scenarios enrich,redact --out /tmp/redact.md
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / ".peers"
# Where cargo builds (scripts/test.sh sets CARGO_TARGET_DIR in CI).
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target").resolve()
SUT_CPU = "0"
LOAD_CPU = "1"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    log("$", " ".join(str(c) for c in cmd))
    return subprocess.run(cmd, check=True, **kw)


def build(args):
    if args.smoke:
        # CI: the binaries scripts/test.sh already built (SIGHTLINE_BIN, LOADGEN_BIN, SINK_BIN;
        # profile ci), else release ones, and the collector.
        bins = {name: os.environ.get(f"{name.upper()}_BIN") for name in ("sightline", "loadgen", "sink")}
        if not all(bins.values()):
            run(["cargo", "build", "--release", "--locked", "-p", "sightline", "-p", "sightline-bench-tools"], cwd=ROOT)
            bins = {name: TARGET / "release" / name for name in bins}
        return {
            **{name: Path(path) for name, path in bins.items()},
            "otelcol": PEERS / "otelcol",
            "otelcol161": PEERS / "otelcol161",
            "rotel": ROTEL_BIN,
        }
    if not args.no_build:
        run(["cargo", "build", "--profile", "dist", "-p", "sightline"], cwd=ROOT)
        run(["cargo", "build", "--release", "-p", "sightline-bench-tools"], cwd=ROOT)
        PEERS.mkdir(exist_ok=True)
        run(["go", "build", "-o", str(PEERS / "otelcol"), "."], cwd=ROOT / "tests/peers/otelcol")
        run(["go", "build", "-o", str(PEERS / "otelcol161"), "."], cwd=ROOT / "tests/peers/otelcol161")
    return {
        "sightline": Path(args.sightline_bin) if args.sightline_bin else TARGET / "dist/sightline",
        "loadgen": TARGET / "release/loadgen",
        "sink": TARGET / "release/sink",
        "otelcol": PEERS / "otelcol",
        "otelcol161": PEERS / "otelcol161",
        "rotel": ROTEL_BIN,
    }


def http_json(url, method="GET"):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body.strip() else {}


def wait_http(url, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def proc_hwm_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class Sink:
    def __init__(self, bins, tmp):
        self.grpc, self.http, self.admin = free_port(), free_port(), free_port()
        # Three OTLP ports counted together: the gateways of the loadbalancing scenario.
        self.gateways = [self.grpc, self.http, free_port()]
        self.log = open(tmp / "sink.log", "w")
        self.proc = subprocess.Popen(
            ["taskset", "-c", LOAD_CPU, bins["sink"], "--grpc", f"127.0.0.1:{self.grpc}",
             "--http", f"127.0.0.1:{self.http}", "--admin", f"127.0.0.1:{self.admin}",
             "--also-listen", f"127.0.0.1:{self.gateways[2]}",
             "--verify-ownership", "0.01"],
            stdout=self.log, stderr=self.log)
        if not wait_http(f"http://127.0.0.1:{self.admin}/stats", 30):
            raise RuntimeError("sink did not start: " + (tmp / "sink.log").read_text())

    def stats(self):
        return http_json(f"http://127.0.0.1:{self.admin}/stats")

    def reset(self):
        http_json(f"http://127.0.0.1:{self.admin}/reset", "POST")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


SIGNAL_PIPE = {"traces": "traces", "logs": "logs", "metrics": "metrics"}


# OTLP -> Prometheus remote write: the same work on both sides.
#  * Enrichment: Sightline's ownership processor (catalog lookup, owner.* attributes) vs the
#    collector's resource processor (a static owner.team, as in `enrich`). Then the collector's
#    batch processor (8192 points / 200 ms); Sightline's exporter batches up to the same 8192
#    points (`sending_queue.batch.max_size`), without a timer.
#  * owner_team on every series: Sightline `promote_resource_attributes: [owner.team]` vs the
#    collector's `resource_constant_labels: {included: [owner.team]}`. No other resource
#    attribute becomes a label (`resource_to_telemetry_conversion` off on both).
#  * target_info on for both: the other resource attributes go there.
#  * 5 concurrent requests: the collector's `remote_write_queue.num_consumers: 5` (one queue
#    consumer; 5 is its request parallelism and its default) vs Sightline's
#    `sending_queue.num_consumers: 5` (5 shards, one driver consumer: ADR 9).
#  * Request size: the collector splits at `max_batch_size_bytes` (3 MB, its default),
#    Sightline at `max_samples_per_send`, set so that both send requests of about the same
#    size (see the sink's bytes per request in the run rows).
#  * Both: metric suffixes on, snappy, remote write 1.0, no native histograms (none in the
#    corpus), exemplars and metadata off.
#  * Overload: here the exporter is the bottleneck. Sightline's queue (1000 requests) blocks
#    when full (`block_on_overflow: true`), pushing back on the closed loop instead of refusing;
#    the collector's queue (10000 batches, its default) absorbs the excess and grows. Either
#    way the throughput reported is what the exporter delivered (see measure_remote_write).
REMOTE_WRITE = {"num_consumers": 5, "batch_points": 8192, "max_samples_per_send": 10000}


def sightline_remote_write_config(tmp, sink, ports):
    rw = REMOTE_WRITE
    return f"""
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{ports['grpc']}" }}
processors:
  ownership:
    catalog: ["{tmp}/catalog"]
exporters:
  prometheusremotewrite/sink:
    endpoint: http://127.0.0.1:{sink.http}/api/v1/write
    promote_resource_attributes: [owner.team]
    resource_to_telemetry_conversion: {{ enabled: false }}
    target_info: {{ enabled: true }}
    max_samples_per_send: {rw['max_samples_per_send']}
    sending_queue:
      num_consumers: {rw['num_consumers']}
      block_on_overflow: true
      batch: {{ max_size: {rw['batch_points']} }}
service:
  telemetry:
    metrics: {{ address: "127.0.0.1:{ports['admin']}" }}
    logs: {{ level: warn }}
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [ownership]
      exporters: [prometheusremotewrite/sink]
"""


def otelcol_remote_write_config(tmp, sink, ports):
    rw = REMOTE_WRITE
    return f"""
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{ports['grpc']}" }}
processors:
  batch: {{ send_batch_size: {rw['batch_points']}, timeout: 200ms }}
  resource:
    attributes:
      - key: owner.team
        value: platform
        action: upsert
exporters:
  prometheusremotewrite/sink:
    endpoint: http://127.0.0.1:{sink.http}/api/v1/write
    resource_constant_labels: {{ included: [owner.team] }}
    target_info: {{ enabled: true }}
    max_batch_size_bytes: 3000000
    remote_write_queue: {{ enabled: true, num_consumers: {rw['num_consumers']} }}
service:
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus: {{ host: "127.0.0.1", port: {ports['admin']} }}
    logs: {{ level: warn }}
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [resource, batch]
      exporters: [prometheusremotewrite/sink]
"""


# Exporter queue on disk (traces only): `enrich` with a durable sending queue, a fresh temporary
# directory per SUT start, removed when it stops.
#  * disk_batch: Sightline `fsync: batch` (group commit: the payloads that arrived during the
#    previous write are written and fdatasync'ed together) vs the collector's file_storage
#    `fsync: false` (bbolt with NoSync: each request is its own bbolt transaction, written to
#    the page cache and never synced). The collector's persistent queue has no group commit
#    (one transaction per request, under the queue's lock), so `fsync: false` is its only
#    throughput-oriented setting; it is the nearer match in cost, not in guarantee: Sightline
#    syncs, the collector does not (it survives a crash of the process, not of the machine,
#    like Sightline's `fsync: never`).
#  * disk_always: Sightline `fsync: always` (fdatasync each payload) vs file_storage
#    `fsync: true` (bbolt syncs every transaction): the same guarantee on both sides.
#  * Acknowledgement: both acknowledge the client after the request is in the queue's storage.
#    Sightline: `durability: ack_after_persist` (its default for a disk queue). Collector: the
#    persistent queue's Offer returns after the bbolt transaction that stores the request has
#    committed (the receiver waits for it; `wait_for_result` is not allowed with `storage`).
#    For that to hold, the collector's pipeline here has no batch processor (it acknowledges
#    before the exporter's queue sees the data); the exporter batches after the queue instead
#    (`sending_queue.batch`, 8192 spans / 200 ms, as the batch processor in `enrich`).
#    Sightline's exporter batches adaptively after its queue, as in `enrich`.
#  * Full queue: the collector's queue is sized in requests (1000, its default) and can fill
#    within a run when its exporter drains slower than its receiver accepts (with `fsync: true`
#    reading and deleting a request are synced transactions too), so it blocks
#    (`block_on_overflow: true`), pushing back on the closed loop instead of refusing.
#    Sightline's is sized in bytes (1 GiB, its default) and does not fill in these runs.
DISK_QUEUE = {"disk_batch": {"sightline": "batch", "otelcol": "false"},
              "disk_always": {"sightline": "always", "otelcol": "true"}}


# Exporter compression per scenario: `defaults` leaves each system's own default (gzip for
# both: tonic's level 6 / Go's gzip level 6 in the collector), `zstd` sets zstd on both; every
# other scenario sends uncompressed.
EXPORT_COMPRESSION = {"defaults": None, "zstd": "zstd", "fanout3_gzip": None}
# What the load generator compresses its requests with, per scenario (the SUT's config is
# `enrich`'s: ownership, uncompressed out); every other scenario sends uncompressed.
CLIENT_COMPRESSION = {"client_gzip": "gzip"}


# rotel (0.0.1-alpha10, from PyPI's `rotel` wheel into .peers/venv), the third system where it
# can do the scenario: OTLP gRPC in, `--otel-resource-attributes owner.team=platform` (a static
# attribute, as the collector's resource processor here), OTLP gRPC out with its default
# compression (gzip), so it runs `defaults` only: with `--otlp-exporter-compression none` this
# version still sent 52 bytes per span (gzip's size) where the others sent 243, so an
# "uncompressed" rotel row would not be one.
ROTEL_SCENARIOS = {"defaults"}
ROTEL_BIN = PEERS / "venv/lib/python3.11/site-packages/rotel/rotel-agent"


def systems(args, scenario):
    """The systems measured for a scenario, the collector first."""
    out = ["otelcol", "sightline"]
    if args.rotel and scenario in ROTEL_SCENARIOS:
        out.append("rotel")
    return out


def wait_tcp(port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


# Item-level processors (traces only, not in the default set): `enrich` plus a few statements
# typical of production, the same text on both sides. The collector runs as the contrib
# v0.161.0 peer (tests/peers/otelcol161: the filter and transform processors do not resolve at
# a newer release here).
#  * transform: set an attribute on every span, delete one, copy one under a condition.
#  * filter: drop health checks (1/16 of the corpus's server spans have http.route /healthz).
ITEM_NAME = {"traces": "spans", "logs": "log_records", "metrics": "metric_points"}
ITEM_PROCESSORS = {
    "transform": """  transform:
    error_mode: ignore
    trace_statements:
      - 'set(span.attributes["deployment.environment.name"], "prod")'
      - 'delete_key(span.attributes, "url.path")'
      - 'set(span.attributes["http.server.route"], span.attributes["http.route"]) where span.kind == SPAN_KIND_SERVER'
""",
    "filter": """  filter:
    error_mode: ignore
    traces:
      span:
        - 'attributes["http.route"] == "/healthz"'
""",
}


# Redaction (logs only, not in the default set): Sightline's `policy` processor (enforce, its
# default redaction: the six validated detectors and the blocked key names, mask) against the
# collector's contrib `redaction` processor (v0.161.0 peer) with the same key pattern and one
# regex per detector (it has no validators), every key allowed, no summary attributes.
REDACT = {
    "sightline": """  policy:
    mode: enforce
""",
    "otelcol": r"""  redaction:
    allow_all_keys: true
    blocked_key_patterns: ['(?i)^(password|passwd|secret|api[_.-]?key|authorization)$']
    blocked_values:
      - '\b(?:\d[ -]?){12,18}\d\b'
      - '[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63}'
      - 'eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*'
      - '\b(?:AKIA|ASIA)[A-Z2-7]{16}\b'
      - '(?i)\bbearer[ \t]+[A-Za-z0-9._~+/-]+=*'
      - '-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----'
    summary: silent
""",
}
# The scenarios whose processors differ per system, and the one signal each runs on.
SCENARIO_SIGNAL = {"transform": "traces", "filter": "traces", "redact": "logs", "loadbalancing": "traces"}


# loadbalancing (traces only, not in the default set): an agent that spreads traces over three
# gateways by trace id, Sightline's `loadbalancing` exporter against the collector's
# `loadbalancingexporter` (the v0.161.0 peer), both with the static resolver and the same three
# endpoints (three ports of one sink, counted together), `enrich`'s processors and OTLP gRPC out
# uncompressed. Each side's exporter defaults otherwise (the collector: one otlp exporter with its
# own queue per endpoint; Sightline: one queue before routing).
def loadbalancing_exporter(sink):
    hosts = ", ".join(f'"127.0.0.1:{p}"' for p in sink.gateways)
    return f"""
  loadbalancing:
    protocol:
      otlp:
        tls: {{ insecure: true }}
        compression: none
    resolver:
      static: {{ hostnames: [{hosts}] }}
"""


def fanout(scenario):
    """OTLP exporters in the pipeline: fanout3 (uncompressed) and fanout3_gzip (each system's
    default compression, gzip) send the same data to three exporters."""
    return 3 if scenario.startswith("fanout3") else 1


def compression_line(scenario):
    comp = EXPORT_COMPRESSION.get(scenario, "none")
    return "" if comp is None else f"    compression: {comp}\n"


def sightline_config(tmp, sig, scenario, sink, ports, queue_dir=None):
    if scenario == "remote_write":
        return sightline_remote_write_config(tmp, sink, ports)
    queue = ""
    if scenario in DISK_QUEUE:
        queue = f"""    sending_queue:
      storage: disk
      directory: "{queue_dir}"
      fsync: {DISK_QUEUE[scenario]['sightline']}
      durability: ack_after_persist
"""
    procs = "[ownership]" if scenario != "passthrough" else "[]"
    extra = ITEM_PROCESSORS.get(scenario, "")
    if extra:
        procs = f"[ownership, {scenario}]"
    if scenario == "redact":
        extra, procs = REDACT["sightline"], "[ownership, policy]"
    n_exp = fanout(scenario)
    exporters = "".join(
        f"""
  otlp/sink{i}:
    endpoint: 127.0.0.1:{sink.grpc}
    tls: {{ insecure: true }}
{compression_line(scenario)}{queue}""" for i in range(n_exp))
    names = ", ".join(f"otlp/sink{i}" for i in range(n_exp))
    if scenario == "loadbalancing":
        exporters, names = loadbalancing_exporter(sink), "loadbalancing"
    return f"""
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{ports['grpc']}" }}
processors:
  ownership:
    catalog: ["{tmp}/catalog"]
{extra}exporters:{exporters}
service:
  telemetry:
    metrics: {{ address: "127.0.0.1:{ports['admin']}" }}
    logs: {{ level: warn }}
  pipelines:
    {SIGNAL_PIPE[sig]}:
      receivers: [otlp]
      processors: {procs}
      exporters: [{names}]
"""


def otelcol_config(tmp, sig, scenario, sink, ports, queue_dir=None):
    # The collector's closest equivalent: a static owner.team from the resource processor
    # (it has no catalog lookup), then the batch processor, then the OTLP exporter.
    if scenario == "remote_write":
        return otelcol_remote_write_config(tmp, sink, ports)
    procs = "[resource, batch]" if scenario != "passthrough" else "[batch]"
    extra = ITEM_PROCESSORS.get(scenario, "")
    if extra:
        procs = f"[resource, {scenario}, batch]"
    if scenario == "redact":
        extra, procs = REDACT["otelcol"], "[resource, redaction, batch]"
    queue, extensions, service_ext = "", "", ""
    if scenario in DISK_QUEUE:
        # No batch processor (it would acknowledge before the persistent queue); the exporter
        # batches after its queue instead. See DISK_QUEUE.
        procs = "[resource]"
        queue = """    sending_queue:
      storage: file_storage
      block_on_overflow: true
      batch: { sizer: items, min_size: 8192, flush_timeout: 200ms }
"""
        extensions = f"""extensions:
  file_storage:
    directory: "{queue_dir}"
    fsync: {DISK_QUEUE[scenario]['otelcol']}
"""
        service_ext = "  extensions: [file_storage]\n"
    n_exp = fanout(scenario)
    exporters = "".join(
        f"""
  otlp/sink{i}:
    endpoint: 127.0.0.1:{sink.grpc}
    tls: {{ insecure: true }}
{compression_line(scenario)}{queue}""" for i in range(n_exp))
    names = ", ".join(f"otlp/sink{i}" for i in range(n_exp))
    if scenario == "loadbalancing":
        exporters, names = loadbalancing_exporter(sink), "loadbalancing"
    return f"""{extensions}
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{ports['grpc']}" }}
processors:
  batch: {{ send_batch_size: 8192, timeout: 200ms }}
  resource:
    attributes:
      - key: owner.team
        value: platform
        action: upsert
{extra}exporters:{exporters}
service:
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus: {{ host: "127.0.0.1", port: {ports['admin']} }}
    logs: {{ level: warn }}
{service_ext}  pipelines:
    {SIGNAL_PIPE[sig]}:
      receivers: [otlp]
      processors: {procs}
      exporters: [{names}]
"""


class SUT:
    def __init__(self, name, bins, tmp, sig, scenario, sink):
        self.name = name
        self.ports = {"grpc": free_port(), "admin": free_port()}
        # Disk queue scenarios: a fresh queue directory per start, removed in stop().
        self.queue_dir = tempfile.mkdtemp(prefix=f"queue-{name}-", dir=tmp) if scenario in DISK_QUEUE else None
        cfg = tmp / f"{name}.yaml"
        if name == "rotel":
            cmd = [bins["rotel"], "start", "--otlp-grpc-endpoint", f"127.0.0.1:{self.ports['grpc']}",
                   "--otlp-http-endpoint", f"127.0.0.1:{self.ports['admin']}", "--exporter", "otlp",
                   "--otlp-exporter-endpoint", f"http://127.0.0.1:{sink.grpc}",
                   "--otel-resource-attributes", "owner.team=platform"]
            ready = None
        elif name == "sightline":
            cfg.write_text(sightline_config(tmp, sig, scenario, sink, self.ports, self.queue_dir))
            cmd = [bins["sightline"], "run", "--config", str(cfg)]
            ready = f"http://127.0.0.1:{self.ports['admin']}/readyz"
        else:
            cfg.write_text(otelcol_config(tmp, sig, scenario, sink, self.ports, self.queue_dir))
            cmd = [bins["otelcol161" if scenario in SCENARIO_SIGNAL else "otelcol"], "--config", str(cfg)]
            ready = f"http://127.0.0.1:{self.ports['admin']}/metrics"
        self.logf = open(tmp / f"{name}.log", "w")
        self.proc = subprocess.Popen(["taskset", "-c", SUT_CPU, *map(str, cmd)], stdout=self.logf, stderr=self.logf)
        if not (wait_http(ready, 60) if ready else wait_tcp(self.ports["grpc"], 60)):
            raise RuntimeError(f"{name} did not start: " + (tmp / f"{name}.log").read_text()[-3000:])
        time.sleep(0.5)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()
        if self.queue_dir:
            shutil.rmtree(self.queue_dir, ignore_errors=True)


def loadgen(bins, endpoint, sig, args, tmp, rate=None, compression="none", duration=None):
    out = tmp / f"loadgen-{time.time_ns()}.json"
    cmd = ["taskset", "-c", LOAD_CPU, str(bins["loadgen"]), "--endpoint", endpoint, "--protocol", "grpc",
           "--signal", sig, "--span-size", args.span_size, "--items-per-request", str(args.items_per_request),
           "--connections", str(args.connections), "--duration", f"{int((duration or args.duration) * 1000)}ms",
           "--warmup", f"{int(args.warmup * 1000)}ms", "--compression", compression, "--json", str(out), "--quiet"]
    if rate:
        cmd += ["--rate", str(int(rate))]
    else:
        cmd += ["--inflight", str(args.inflight)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=open(tmp / "loadgen.log", "a"))
    return json.loads(out.read_text())


def refused(report):
    return int(report["requests"]["refused"]) + int(report["requests"]["errors"])


def prom_values(port):
    """The SUT's own metrics (Prometheus text) summed by name, `_total` stripped; the dropped
    points counter is also kept per `reason`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode("utf-8", "replace")
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name = head.split("{", 1)[0].strip()
        name = name[:-len("_total")] if name.endswith("_total") else name
        try:
            v = float(value)
        except ValueError:
            continue
        out[name] = out.get(name, 0.0) + v
        if name == "sightline_exporter_dropped_points" and 'reason="' in head:
            reason = head.split('reason="', 1)[1].split('"', 1)[0]
            out[f"dropped/{reason}"] = out.get(f"dropped/{reason}", 0.0) + v
    return out


def measure_remote_write(bins, sink, sut, sig, args, tmp):
    """Closed loop through the remote-write exporter. The exporter, not the receiver, is the
    bottleneck here, so the headline is the rate the SUT's exporter delivered during the
    measured window (its own sent-points counter, sampled twice a second), not the rate the
    receiver accepted (a queue can accept faster than it drains for a while). Then waits until
    the exporter has sent every accepted point and the sink stands still, and reads both sides'
    counters."""
    cpu0 = proc_cpu_seconds(sut.proc.pid)
    trace, done = [], threading.Event()

    def sample():
        while not done.is_set():
            try:
                trace.append((time.time(), prom_values(sut.ports["admin"]).get("otelcol_exporter_sent_metric_points", 0.0)))
            except OSError:
                pass
            done.wait(0.5)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        rep = loadgen(bins, f"127.0.0.1:{sut.ports['grpc']}", sig, args, tmp)
    finally:
        done.set()
        th.join()
    accepted = int(rep["items"]["accepted"])
    # The measured window: from `warmup` after the first point left the exporter, `duration` long.
    started = next((t for t, v in trace if v > 0), None)
    delivered = float("nan")
    if started is not None:
        lo, hi = started + args.warmup, started + args.warmup + args.duration
        inside = [(t, v) for t, v in trace if lo <= t <= hi]
        if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
            delivered = (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
    deadline = time.time() + 60
    last, m = -1, {}
    while time.time() < deadline:
        m = prom_values(sut.ports["admin"])
        samples = int(sink.stats()["remote_write"]["samples"])
        if m.get("otelcol_exporter_sent_metric_points", 0) >= accepted and samples == last:
            break
        last = samples
        time.sleep(0.5)
    # The CPU of every point the SUT sent (warm-up and drain included), over the same span.
    cpu = proc_cpu_seconds(sut.proc.pid) - cpu0
    st = sink.stats()["remote_write"]
    sent = m.get("otelcol_exporter_sent_metric_points", 0.0)
    failed = m.get("otelcol_exporter_send_failed_metric_points", 0.0)
    enq_failed = m.get("otelcol_exporter_enqueue_failed_metric_points", 0.0)
    dropped = {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("dropped/") and v}
    n_samples = st["samples"] + st["histograms"]
    return {
        "items_per_sec": delivered,
        "accepted_per_sec": float(rep["throughput"]["items_per_s"]),
        "cpu_s_per_million": cpu / max(sent, 1) * 1e6,
        "cpu_s_per_million_samples": cpu / max(n_samples, 1) * 1e6,
        "peak_rss_mib": proc_hwm_bytes(sut.proc.pid) / 2**20,
        "refused": refused(rep),
        "delivered_ok": sent >= accepted and failed == 0 and enq_failed == 0 and st["samples"] > 0
        and st["ownership_missing"] == 0 and st["invalid"] == 0,
        "accepted": accepted,
        "sent_points": sent,
        "send_failed_points": failed,
        "enqueue_failed_points": enq_failed,
        "dropped_points": dropped,
        "sink_requests": st["requests"],
        "sink_series": st["series"],
        "sink_samples": n_samples,
        "samples_per_point": n_samples / max(sent, 1),
        "bytes_per_request": st["bytes"] / max(st["requests"], 1),
        "ownership_checked_series": st["ownership_ok"] + st["ownership_missing"],
        "ownership_missing": st["ownership_missing"],
    }


def validate_configs(bins, tmp, sig, scenario):
    """Both systems accept the configs the scenario generates (`validate`). The smoke check of
    the scenarios that take too long for CI (remote_write, the disk queue ones), and the check
    run before a disk queue scenario is measured."""
    class FakeSink:
        http = grpc = 9
        gateways = [9, 10, 11]

    ports = {"grpc": 9, "admin": 9}
    ok = True
    for name, cfg_fn in (("sightline", sightline_config), ("otelcol", otelcol_config)):
        # file_storage's validation requires its directory to exist.
        queue_dir = tempfile.mkdtemp(prefix=f"validate-{name}-", dir=tmp)
        try:
            cfg = tmp / f"{name}-{scenario}.yaml"
            cfg.write_text(cfg_fn(tmp, sig, scenario, FakeSink, ports, queue_dir))
            binary = bins["otelcol161"] if name == "otelcol" and scenario in SCENARIO_SIGNAL else bins[name]
            r = subprocess.run([str(binary), "validate", "--config", str(cfg)], capture_output=True, text=True)
            if r.returncode != 0:
                log(f"{name} refuses the {scenario} config:", r.stdout, r.stderr)
                ok = False
        finally:
            shutil.rmtree(queue_dir, ignore_errors=True)
    return ok


def validate_remote_write(bins, tmp):
    return validate_configs(bins, tmp, "metrics", "remote_write")


def validate_disk_queue(bins, tmp):
    return all([validate_configs(bins, tmp, "traces", s) for s in DISK_QUEUE])


def measure_max(bins, name, tmp, sig, scenario, args):
    """Closed loop: achieved items/s, CPU s per million items, peak RSS. Returns a dict."""
    sink = Sink(bins, tmp)
    sut = SUT(name, bins, tmp, sig, scenario, sink)
    try:
        if scenario == "remote_write":
            return measure_remote_write(bins, sink, sut, sig, args, tmp)
        comp = CLIENT_COMPRESSION.get(scenario, "none")
        cpu0 = proc_cpu_seconds(sut.proc.pid)
        rep = loadgen(bins, f"127.0.0.1:{sut.ports['grpc']}", sig, args, tmp, compression=comp)
        cpu1 = proc_cpu_seconds(sut.proc.pid)
        # Let queues drain, then check the sink got everything that was accepted.
        accepted = int(rep["items"]["accepted"])
        n_exp = fanout(scenario)
        deadline = time.time() + 20
        got, wire = 0, 0
        dropping = scenario == "filter"
        last, stable_since = -1, time.time()
        while time.time() < deadline:
            st = sink.stats()[sig]
            got, wire = int(st["items"]), int(st.get("wire_bytes", 0))
            if got >= accepted * n_exp:
                break
            if dropping:
                # Fewer items reach the sink by design: wait until the count stops moving.
                if got != last:
                    last, stable_since = got, time.time()
                elif time.time() - stable_since > 1.5:
                    break
            time.sleep(0.2)
        items_s = float(rep["throughput"]["items_per_s"])
        # Items the SUT processed during the whole run (warm-up included): what the sink got,
        # or, where the SUT drops on purpose, what its own receiver accepted.
        processed = got / n_exp
        delivered_ok = got >= accepted * n_exp
        if dropping:
            m = prom_values(sut.ports["admin"])
            processed = m.get(f"otelcol_receiver_accepted_{ITEM_NAME[sig]}", 0.0)
            delivered_ok = 0 < got < processed
        return {
            "items_per_sec": items_s,
            # Every item the SUT forwarded during the whole run (warm-up included), as counted
            # by the sink, against the CPU it used over the same run.
            "cpu_s_per_million": (cpu1 - cpu0) / max(processed, 1) * 1e6,
            "peak_rss_mib": proc_hwm_bytes(sut.proc.pid) / 2**20,
            # Bytes the SUT put on the wire (request bodies as sent, compressed or not) per item.
            "wire_bytes_per_item": wire / max(got, 1),
            "refused": refused(rep),
            "delivered_ok": delivered_ok,
            "accepted": accepted,
            "sink_items": got,
        }
    finally:
        sut.stop()
        sink.stop()


def proc_faults(pid):
    """Minor + major page faults of the whole process (every thread, live or exited)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[7]) + int(fields[9])  # minflt + majflt


def proc_ctx_switches(pid):
    """Voluntary + involuntary context switches, summed over the process's live threads."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def measure_fixed(bins, name, tmp, sig, scenario, args, rate):
    """Open loop at a fixed `rate` items/s (an agent's working point, far below its maximum):
    CPU s per million items, and per request the page faults, context switches and (with
    `perf`) system calls of the SUT over the measured window."""
    sink = Sink(bins, tmp)
    sut = SUT(name, bins, tmp, sig, scenario, sink)
    perf_out = tmp / f"perf-{name}-{time.time_ns()}.csv"
    perf = None
    try:
        # The counters cover the whole loadgen run (warm-up included), as the CPU time does.
        cpu0, flt0, cs0 = proc_cpu_seconds(sut.proc.pid), proc_faults(sut.proc.pid), proc_ctx_switches(sut.proc.pid)
        if shutil.which("perf"):
            perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(perf_out), "-e", "raw_syscalls:sys_enter",
                                     "-p", str(sut.proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rep = loadgen(bins, f"127.0.0.1:{sut.ports['grpc']}", sig, args, tmp, rate=rate,
                      compression=CLIENT_COMPRESSION.get(scenario, "none"))
        cpu1, flt1, cs1 = proc_cpu_seconds(sut.proc.pid), proc_faults(sut.proc.pid), proc_ctx_switches(sut.proc.pid)
        syscalls = float("nan")
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=10)
            for line in perf_out.read_text().splitlines() if perf_out.exists() else []:
                f = line.split(",")
                if len(f) > 2 and f[2] == "raw_syscalls:sys_enter" and f[0].strip().isdigit():
                    syscalls = float(f[0])
        accepted = int(rep["items"]["accepted"])
        n_exp = fanout(scenario)
        deadline, got = time.time() + 20, 0
        while time.time() < deadline:
            got = int(sink.stats()[sig]["items"])
            if got >= accepted * n_exp:
                break
            time.sleep(0.2)
        # Everything the SUT forwarded over the run (warm-up included, as the counters are), as
        # the sink counted it, and the client requests that carried it.
        items = max(got / n_exp, 1)
        requests = max(items / args.items_per_request, 1)
        return {
            "rate": float(rep["throughput"]["items_per_s"]),
            "cpu_s_per_million": (cpu1 - cpu0) / items * 1e6,
            "faults_per_request": (flt1 - flt0) / requests,
            "ctx_switches_per_request": (cs1 - cs0) / requests,
            "syscalls_per_request": syscalls / requests,
            "clean": refused(rep) == 0 and got >= accepted * n_exp,
        }
    finally:
        if perf and perf.poll() is None:
            perf.kill()
        sut.stop()
        sink.stop()


def measure_latency(bins, name, tmp, sig, scenario, args, rate):
    sink = Sink(bins, tmp)
    sut = None
    try:
        if name == "direct" and scenario == "remote_write":
            # loadgen speaks OTLP only: no baseline; the table shows end-to-end latency.
            return {"p50_us": 0.0, "p99_us": 0.0}
        if name == "direct":
            endpoint = f"127.0.0.1:{sink.grpc}"
        else:
            sut = SUT(name, bins, tmp, sig, scenario, sink)
            endpoint = f"127.0.0.1:{sut.ports['grpc']}"
        comp = CLIENT_COMPRESSION.get(scenario, "none")
        if comp != "none":
            # Compressed requests carry no send-time stamp: no end-to-end latency to report.
            return {"p50_us": float("nan"), "p99_us": float("nan")}
        loadgen(bins, endpoint, sig, args, tmp, rate=rate, duration=args.latency_duration, compression=comp)
        st = sink.stats()["remote_write" if scenario == "remote_write" else sig]
        return {"p50_us": float(st["latency_p50_us"]), "p99_us": float(st["latency_p99_us"])}
    finally:
        if sut:
            sut.stop()
        sink.stop()


def med(rows, key):
    vals = [r[key] for r in rows if r is not None]
    return statistics.median(vals) if vals else float("nan")


def machine():
    model = "unknown"
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def fmt(v, digits=0):
    if v != v:  # NaN
        return "n/a"
    return f"{v:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="short run: 1 run, 2 s per case; traces/enrich unless --signals/--scenarios are given")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--latency-duration", type=float, default=10)
    ap.add_argument("--signals", default=None, help="default traces,logs,metrics (--quick: traces)")
    ap.add_argument("--scenarios", default=None,
                    help="default defaults,passthrough,enrich,zstd,client_gzip,fanout3 (--quick: enrich); also remote_write "
                         "(metrics only) and disk_batch, disk_always, transform, filter, loadbalancing (traces only), redact (logs only), not in the default set")
    ap.add_argument("--span-size", default="small", choices=["small", "large"])
    ap.add_argument("--items-per-request", type=int, default=500)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--inflight", type=int, default=2)
    ap.add_argument("--rate", type=float, default=None,
                    help="also run each case open loop at this fixed rate (items/s; e.g. 120000, an agent's working "
                         "point) and report CPU s per million items, page faults, context switches and system calls "
                         "(with perf) per request; with --fixed-only, instead of the max-throughput and latency runs")
    ap.add_argument("--fixed-only", action="store_true", help="with --rate: only the fixed-rate runs")
    ap.add_argument("--rotel", action="store_true",
                    help="also measure rotel (pip install rotel==0.0.1a15 into .peers/venv) in the scenarios it can run: "
                         + ", ".join(sorted(ROTEL_SCENARIOS)))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--sightline-bin", default=None,
                    help="measure this sightline binary instead of target/dist/sightline (e.g. an older commit's, "
                         "for a before/after comparison in one run)")
    ap.add_argument("--out", default=None,
                    help="also write the report to this file (benches/RESULTS.md is curated by hand: paste "
                         "the report into a new section there rather than overwriting it)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--state", default=None,
                    help="accumulate results in this JSON file across invocations (e.g. one signal per call); "
                         "the report covers every case in it")
    ap.add_argument("--smoke", action="store_true",
                    help="CI smoke check: release binaries, 1 s per case, traces/enrich only, report to stdout")
    args = ap.parse_args()
    if args.smoke:
        args.quick = True
    if args.quick:
        args.runs, args.duration, args.warmup, args.latency_duration = 1, 2, 0.5, 2
        args.signals = args.signals or "traces"
        args.scenarios = args.scenarios or "enrich"
    if args.smoke:
        args.duration, args.latency_duration, args.warmup = 1, 1, 0.3
        args.signals, args.scenarios = "traces", "enrich"
    args.signals = args.signals or "traces,logs,metrics"
    args.scenarios = args.scenarios or "defaults,passthrough,enrich,zstd,client_gzip,fanout3"
    if not shutil.which("taskset"):
        sys.exit("taskset is required (util-linux)")
    bins = build(args)
    results = {}
    if args.state and Path(args.state).exists():
        results = json.loads(Path(args.state).read_text())
    with tempfile.TemporaryDirectory(prefix="sightline-compare-") as t:
        tmp = Path(t)
        (tmp / "catalog").mkdir()
        run([str(bins["loadgen"]), "--write-catalog", str(tmp / "catalog" / "teams.yaml")])
        disk = [x for x in args.scenarios.split(",") if x in DISK_QUEUE]
        if disk and "traces" in args.signals.split(","):
            if not all([validate_configs(bins, tmp, "traces", x) for x in disk]):
                sys.exit("a disk queue config is refused (see above)")
        for sig in args.signals.split(","):
            for scenario in args.scenarios.split(","):
                if scenario == "remote_write" and sig != "metrics":
                    continue
                if scenario in DISK_QUEUE and sig != "traces":
                    continue
                if scenario in SCENARIO_SIGNAL and sig != SCENARIO_SIGNAL[scenario]:
                    continue
                case = f"{sig}/{scenario}"
                results[case] = {}
                if args.rate:
                    # The systems' runs interleaved, as for max throughput below.
                    by_name = {name: [] for name in systems(args, scenario)}
                    for i in range(args.runs):
                        for name, rows in by_name.items():
                            log(f"== {case} {name} at a fixed {args.rate:,.0f} items/s, run {i + 1}/{args.runs}")
                            rows.append(measure_fixed(bins, name, tmp, sig, scenario, args, args.rate))
                            log("   ", rows[-1])
                    for name, rows in by_name.items():
                        results[case].setdefault(name, {})["fixed"] = {
                            k: med(rows, k) for k in ("rate", "cpu_s_per_million", "faults_per_request",
                                                      "ctx_switches_per_request", "syscalls_per_request")}
                        results[case][name]["fixed"]["clean"] = all(r["clean"] for r in rows)
                        results[case][name]["fixed"]["runs"] = rows
                    if args.fixed_only:
                        if args.state:
                            Path(args.state).write_text(json.dumps(results, indent=2))
                        continue
                # Run i of every system back to back (collector, Sightline, ...), then run i + 1:
                # this machine's neighbours come and go in bursts, and a burst then falls on
                # both systems of a pair rather than on all the runs of one.
                by_name = {name: [] for name in systems(args, scenario)}
                for i in range(args.runs):
                    for name, rows in by_name.items():
                        log(f"== {case} {name} max throughput, run {i + 1}/{args.runs}")
                        r = measure_max(bins, name, tmp, sig, scenario, args)
                        log("   ", r)
                        rows.append(r)
                for name, rows in by_name.items():
                    results[case].setdefault(name, {}).update({
                        "items_per_sec": med(rows, "items_per_sec"),
                        "cpu_s_per_million": med(rows, "cpu_s_per_million"),
                        "peak_rss_mib": med(rows, "peak_rss_mib"),
                        "wire_bytes_per_item": med(rows, "wire_bytes_per_item"),
                        "clean": all(r["refused"] == 0 and r["delivered_ok"] for r in rows),
                        "runs": rows,
                    })
                    if scenario == "remote_write":
                        for k in ("samples_per_point", "bytes_per_request", "accepted_per_sec",
                                  "cpu_s_per_million_samples"):
                            results[case][name][k] = med(rows, k)
                rate = 0.5 * results[case]["otelcol"]["items_per_sec"]
                if rate != rate:  # NaN: no delivered rate measured (remote_write); use what was accepted
                    rate = 0.5 * results[case]["otelcol"].get("accepted_per_sec", 1000.0)
                for name in ("direct", "otelcol", "sightline"):
                    rows = []
                    for i in range(args.runs):
                        log(f"== {case} {name} latency at {rate:,.0f} items/s, run {i + 1}/{args.runs}")
                        rows.append(measure_latency(bins, name, tmp, sig, scenario, args, rate))
                        log("   ", rows[-1])
                    results[case].setdefault(name, {})
                    results[case][name]["p50_us"] = med(rows, "p50_us")
                    results[case][name]["p99_us"] = med(rows, "p99_us")
                results[case]["latency_rate"] = rate
                if args.state:
                    Path(args.state).write_text(json.dumps(results, indent=2))
        rw_valid = validate_remote_write(bins, tmp) if args.smoke else True
        disk_valid = validate_disk_queue(bins, tmp) if args.smoke else True
        ottl_valid = all([validate_configs(bins, tmp, SCENARIO_SIGNAL[s], s) for s in SCENARIO_SIGNAL]) if args.smoke else True
    if args.smoke:
        r = results["traces/enrich"]
        ok = all(r[n]["clean"] and r[n]["items_per_sec"] > 0 for n in ("otelcol", "sightline"))
        print(render(results, args))
        print("compare smoke:", "ok" if ok else "FAILED (refusals, loss or no throughput)")
        print("remote_write configs:", "valid" if rw_valid else "INVALID (see above)")
        print("disk queue configs:", "valid" if disk_valid else "INVALID (see above)")
        print("transform/filter/redact/loadbalancing configs:", "valid" if ottl_valid else "INVALID (see above)")
        ok = ok and rw_valid and disk_valid and ottl_valid
        sys.exit(0 if ok else 1)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    report = render(results, args)
    if args.out:
        Path(args.out).write_text(report)
    print(report)


def cases(results, args):
    """(signal, [scenarios]) in a stable order, for every case measured."""
    order = ["defaults", "passthrough", "enrich", "zstd", "client_gzip", "fanout3", "fanout3_gzip", "transform", "filter", "redact", "disk_batch", "disk_always"]
    out = {}
    for case in results:
        sig, scen = case.split("/")
        out.setdefault(sig, []).append(scen)
    sigs = [s for s in ("traces", "logs", "metrics") if s in out]
    return [(s, sorted(out[s], key=lambda x: order.index(x) if x in order else 99)) for s in sigs]


def render(results, args):
    lines = [
        "# Benchmark results: Sightline vs the OpenTelemetry Collector",
        "",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Machine: {machine()}. Each system under test pinned to CPU {SUT_CPU}; load generator and sink pinned to CPU {LOAD_CPU}.",
        "- Sightline: this repository, profile `dist` (release, fat LTO). Collector: v0.165.0 built from its Go modules "
        "(tests/peers/otelcol): otlpreceiver -> resourceprocessor (upsert owner.team) -> batchprocessor -> otlpexporter; "
        "in `transform` and `filter`, contrib v0.161.0 (tests/peers/otelcol161) with that processor after the resource processor; "
        "in `redact`, that peer's `redaction` processor against Sightline's `policy` (REDACT in compare.py).",
        f"- Load: `loadgen` closed loop, {args.connections} gRPC connections x {args.inflight} in flight, "
        f"{args.items_per_request} items/request, {args.span_size} spans, {args.duration:g} s measured after {args.warmup:g} s warm-up; "
        f"{args.runs} run(s) per case, interleaved by system, medians. Exporters send to the counting `sink`: `defaults` and `fanout3_gzip` with each system's default "
        "compression (gzip), `zstd` with `compression: zstd`, every other scenario uncompressed (`compression: none`).",
        "- Latency: open loop at 50% of the collector's max rate, loadgen send -> sink receive (stamped in the first item), "
        "minus the same load sent straight to the sink (`direct`).",
        f"- Command: `{shlex.join(['python3', 'benches/compare/compare.py', *sys.argv[1:]])}`",
        "",
    ]
    for sig, scenarios in cases(results, args):
        fixed = [x for x in scenarios if "fixed" in results[f"{sig}/{x}"].get("sightline", {})]
        scenarios = [x for x in scenarios if x != "remote_write" and "items_per_sec" in results[f"{sig}/{x}"].get("sightline", {})]
        if fixed:
            lines += render_fixed(results, sig, fixed)
        if not scenarios:
            continue
        lines += [f"## {sig}", "",
                  "| scenario | system | max items/s (0 refused) | CPU s / M items | peak RSS MiB | wire B/item | p50 added ms | p99 added ms |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for scenario in scenarios:
            r = results[f"{sig}/{scenario}"]
            d = r.get("direct", {})
            for name in [n for n in ("otelcol", "sightline", "rotel") if "items_per_sec" in r.get(n, {})]:
                x = r[name]
                p50 = (x.get("p50_us", float("nan")) - d.get("p50_us", float("nan"))) / 1000
                p99 = (x.get("p99_us", float("nan")) - d.get("p99_us", float("nan"))) / 1000
                clean = "" if x["clean"] else " (refusals or loss!)"
                lines.append(f"| {scenario} | {name} | {fmt(x['items_per_sec'])}{clean} | {fmt(x['cpu_s_per_million'], 2)} | "
                             f"{fmt(x['peak_rss_mib'], 1)} | {fmt(x.get('wire_bytes_per_item', float('nan')), 1)} | "
                             f"{fmt(p50, 2)} | {fmt(p99, 2)} |")
            o, s = r["otelcol"], r["sightline"]
            wire = s.get("wire_bytes_per_item", float("nan")) / o.get("wire_bytes_per_item", float("nan"))
            lines.append(f"| {scenario} | **ratio S/C** | **{fmt(s['items_per_sec'] / o['items_per_sec'], 2)}x** | "
                         f"{fmt(s['cpu_s_per_million'] / o['cpu_s_per_million'], 2)}x | {fmt(s['peak_rss_mib'] / o['peak_rss_mib'], 2)}x | "
                         f"{fmt(wire, 2)}x | | |")
            if "items_per_sec" in r.get("rotel", {}):
                t = r["rotel"]
                wire = s.get("wire_bytes_per_item", float("nan")) / t.get("wire_bytes_per_item", float("nan"))
                lines.append(f"| {scenario} | **ratio S/rotel** | **{fmt(s['items_per_sec'] / t['items_per_sec'], 2)}x** | "
                             f"{fmt(s['cpu_s_per_million'] / t['cpu_s_per_million'], 2)}x | "
                             f"{fmt(s['peak_rss_mib'] / t['peak_rss_mib'], 2)}x | {fmt(wire, 2)}x | | |")
        lines.append("")
        pairs = [f"- `{x}`: {p}" for x in scenarios if (p := pair_ratios(results[f"{sig}/{x}"]))]
        if pairs:
            lines += ["Collector / Sightline CPU per item, run by run (each pair of runs back to back):", "", *pairs, ""]
        if any(x in DISK_QUEUE for x in scenarios):
            lines += render_disk_queue(results, sig)
    if "metrics/remote_write" in results:
        lines += render_remote_write(results["metrics/remote_write"])
    return "\n".join(lines)


def pair_ratios(r):
    """The collector's CPU per item over Sightline's for each pair of max-throughput runs (run i
    of each, measured back to back), and their median; empty with fewer than two pairs."""
    pairs = zip(r["otelcol"].get("runs", []), r["sightline"].get("runs", []))
    ratios = [a["cpu_s_per_million"] / b["cpu_s_per_million"] for a, b in pairs if a and b and b["cpu_s_per_million"] > 0]
    if len(ratios) < 2:
        return ""
    return ", ".join(f"{x:.1f}x" for x in ratios) + f" (median {statistics.median(ratios):.1f}x)"


def render_fixed(results, sig, scenarios):
    lines = [f"## {sig} at a fixed rate", "",
             "Open loop at a fixed rate, far below either system's maximum (an agent's working point). Per client "
             "request: page faults (minor + major), context switches (the SUT's threads, voluntary + involuntary) and "
             "system calls (`perf stat -e raw_syscalls:sys_enter`).", "",
             "| scenario | system | items/s | CPU s / M items | faults / req | ctx switches / req | syscalls / req |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for scenario in scenarios:
        r = results[f"{sig}/{scenario}"]
        for name in [n for n in ("otelcol", "sightline", "rotel") if "fixed" in r.get(n, {})]:
            x = r[name]["fixed"]
            clean = "" if x["clean"] else " (refusals or loss!)"
            lines.append(f"| {scenario} | {name} | {fmt(x['rate'])}{clean} | {fmt(x['cpu_s_per_million'], 2)} | "
                         f"{fmt(x['faults_per_request'], 1)} | {fmt(x['ctx_switches_per_request'], 1)} | "
                         f"{fmt(x['syscalls_per_request'], 1)} |")
        o, s = r["otelcol"]["fixed"], r["sightline"]["fixed"]
        lines.append(f"| {scenario} | **collector / Sightline CPU** | | **{fmt(o['cpu_s_per_million'] / s['cpu_s_per_million'], 2)}x** "
                     "| | | |")
        if "fixed" in r.get("rotel", {}):
            t = r["rotel"]["fixed"]
            lines.append(f"| {scenario} | **rotel / Sightline CPU** | | **{fmt(t['cpu_s_per_million'] / s['cpu_s_per_million'], 2)}x** "
                         "| | | |")
    lines.append("")
    return lines


def render_disk_queue(results, sig):
    lines = [
        "Disk queue scenarios (`enrich` with the exporter's queue on disk, a fresh directory per run): "
        "**disk_batch**: Sightline `fsync: batch` (group commit, synced) vs the collector's file_storage "
        "`fsync: false` (one bbolt transaction per request, never synced: the collector's persistent queue has "
        "no group commit, so this is its throughput setting, with a weaker guarantee than Sightline's). "
        "**disk_always**: Sightline `fsync: always` vs file_storage `fsync: true` (a sync per request on both). "
        "Both acknowledge the client after the request is stored (Sightline `durability: ack_after_persist`; "
        "the collector's persistent queue commits before its receiver returns). The collector's pipeline has no "
        "batch processor here (it would acknowledge before the queue): the exporter batches after the queue "
        "(`sending_queue.batch`: 8192 spans, 200 ms). CPU counts the SUT process only (not the kernel's "
        "write-back threads).",
        "",
    ]
    base = results.get(f"{sig}/enrich", {}).get("sightline")
    for scenario in DISK_QUEUE:
        r = results.get(f"{sig}/{scenario}", {}).get("sightline")
        if base and r:
            lines.append(f"- Sightline {scenario} / enrich: **{fmt(100 * r['items_per_sec'] / base['items_per_sec'])}%** "
                         "of the in-memory queue's items/s.")
    lines.append("")
    return lines


def render_remote_write(r):
    rw = REMOTE_WRITE
    lines = [
        "## metrics -> Prometheus remote write", "",
        f"OTLP metrics in, ownership, remote write 1.0 (snappy) out to the sink's `/api/v1/write`. Collector: "
        f"otlpreceiver -> resourceprocessor -> batchprocessor ({rw['batch_points']} points) -> prometheusremotewriteexporter "
        f"(`resource_constant_labels: {{included: [owner.team]}}`, `remote_write_queue.num_consumers: {rw['num_consumers']}`, "
        f"`max_batch_size_bytes: 3000000`). Sightline: ownership -> prometheusremotewrite "
        f"(`promote_resource_attributes: [owner.team]`, `sending_queue: {{num_consumers: {rw['num_consumers']}, "
        f"block_on_overflow: true, batch: {{max_size: {rw['batch_points']}}}}}`, "
        f"`max_samples_per_send: {rw['max_samples_per_send']}`). "
        "target_info on and resource_to_telemetry_conversion off on both. Points are OTLP data points "
        "(a histogram point is one point and 17 samples). **delivered points/s**: what the exporter sent during the "
        "measured window (its own sent-points counter), the sustained rate; **accepted/s**: what the receiver "
        "acknowledged (more when a queue fills). CPU per point and per sample count everything the exporter sent, "
        "warm-up and drain included; points/s per core = 1e6 / (CPU s / M points). Latency: end to end "
        "(loadgen stamp -> sink, truncated to ms by the translation), no baseline subtracted.",
        "",
        "| system | delivered points/s | accepted/s | CPU s / M points | CPU s / M samples | points/s per core | "
        "peak RSS MiB | samples / point | KiB / request | p50 e2e ms | p99 e2e ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    nan = float("nan")
    for name in ("otelcol", "sightline"):
        x = r[name]
        clean = "" if x["clean"] else " (refusals or loss!)"
        lines.append(
            f"| {name} | {fmt(x['items_per_sec'])}{clean} | {fmt(x.get('accepted_per_sec', nan))} | "
            f"{fmt(x['cpu_s_per_million'], 2)} | {fmt(x.get('cpu_s_per_million_samples', nan), 3)} | "
            f"{fmt(1e6 / x['cpu_s_per_million'])} | {fmt(x['peak_rss_mib'], 1)} | "
            f"{fmt(x.get('samples_per_point', nan), 2)} | {fmt(x.get('bytes_per_request', nan) / 1024)} | "
            f"{fmt(x.get('p50_us', nan) / 1000, 2)} | {fmt(x.get('p99_us', nan) / 1000, 2)} |")
    o, s = r["otelcol"], r["sightline"]
    lines.append(
        f"| **ratio S/C** | **{fmt(s['items_per_sec'] / o['items_per_sec'], 2)}x** | "
        f"{fmt(s.get('accepted_per_sec', nan) / o.get('accepted_per_sec', nan), 2)}x | "
        f"{fmt(s['cpu_s_per_million'] / o['cpu_s_per_million'], 2)}x | "
        f"{fmt(s.get('cpu_s_per_million_samples', nan) / o.get('cpu_s_per_million_samples', nan), 2)}x | "
        f"**{fmt(o['cpu_s_per_million'] / s['cpu_s_per_million'], 2)}x** | "
        f"{fmt(s['peak_rss_mib'] / o['peak_rss_mib'], 2)}x | | | | |")
    lines.append("")
    return lines


if __name__ == "__main__":
    main()
