#!/usr/bin/env python3
"""Kafka, side by side: Sightline's `kafka` exporter and receiver against the collector's
(contrib v0.165.1 kafkaexporter / kafkareceiver, franz-go), on one real Apache Kafka 4.4.0
broker (KRaft, the jars scripts/test.sh puts in .peers/kafka/lib), in one run.

    python3 benches/compare/kafka.py --runs 3 --duration 8

* export: loadgen (open loop at --rate spans/s, default 200,000: below what the broker, which
  shares a core with the load generator, absorbs; closed loop, both systems would be measured
  refusing what the broker cannot take) -> SUT: ownership (Sightline) or the resource
  processor (the collector), then the kafka exporter (otlp_proto, required_acks 1, no
  compression, the defaults of both) -> the broker. Each run writes its own topic. Reported:
  spans/s accepted, and CPU s per million spans of everything the SUT accepted and the broker
  acknowledged (the SUT's own sent counter reaches what it accepted before the CPU is read).
* receive: the SUT reads a topic holding N spans (written once by Sightline's exporter, the
  same bytes for both systems) from the beginning with a fresh consumer group, and exports
  them over OTLP gRPC (uncompressed) to the counting sink. Reported: spans/s from start to the
  sink's last span, and CPU s per million spans over the same time.

The SUT is pinned to CPU 0; the broker, loadgen and the sink to CPU 1 (quote ratios: they
share a core). Uses compare.py's binaries (build them first: compare.py without --no-build,
or scripts/test.sh) and its helpers.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as C  # noqa: E402

KAFKA_LIB = C.PEERS / "kafka" / "lib"


class Broker:
    def __init__(self, tmp: Path):
        self.port, self.controller = C.free_port(), C.free_port()
        d = tmp / "kafka"
        d.mkdir()
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(d / "data"),
            "num.partitions": "4",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": "20000000",
        }
        cfg = d / "server.properties"
        cfg.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        java = shutil.which("java")
        if java is None or not any(KAFKA_LIB.glob("kafka_2.13-*.jar")):
            raise SystemExit(f"needs java and the Kafka jars in {KAFKA_LIB} (scripts/test.sh installs both)")
        jvm = ["taskset", "-c", C.LOAD_CPU, java, "-Xms512m", "-Xmx1g", "-cp", f"{KAFKA_LIB}/*"]
        cid = subprocess.run(jvm + ["kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True,
                             check=True).stdout.split()[-1]
        subprocess.run(jvm + ["kafka.tools.StorageTool", "format", "--standalone", "-t", cid, "-c", str(cfg)],
                       capture_output=True, check=True)
        self.log = open(d / "kafka.log", "w")
        self.proc = subprocess.Popen(jvm + ["kafka.Kafka", str(cfg)], stdout=self.log, stderr=self.log)
        if not C.wait_tcp(self.port, 90):
            raise RuntimeError("kafka did not start")
        time.sleep(3)
        self.bootstrap = f"127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def export_config(name, tmp, exporter_id, exporter, ports, batch="{ send_batch_size: 8192, timeout: 200ms }"):
    """OTLP in, then ownership (Sightline) or the resource and batch processors (the
    collector), then the exporter `exporter_id` (`exporter`: its YAML body)."""
    if name == "sightline":
        processors = f'  ownership:\n    catalog: ["{tmp}/catalog"]\n'
        telemetry = f"    metrics: {{ address: \"127.0.0.1:{ports['admin']}\" }}\n    logs: {{ level: warn }}\n"
        chain = "[ownership]"
    else:
        processors = f"  batch: {batch}\n  resource:\n    attributes: [{{ key: owner.team, value: platform, action: upsert }}]\n"
        telemetry = (
            "    metrics:\n      readers: [{ pull: { exporter: { prometheus: { host: 127.0.0.1, port: "
            f"{ports['admin']} }} }} }} }}]\n"
        )
        chain = "[resource, batch]"
    return f"""
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{ports['grpc']}" }} }} }}
processors:
{processors}exporters:
  {exporter_id}:
{exporter}service:
  telemetry:
{telemetry}  pipelines:
    traces: {{ receivers: [otlp], processors: {chain}, exporters: [{exporter_id}] }}
"""


def sightline_export(tmp, broker, topic, ports):
    return export_config("sightline", tmp, "kafka", f'    brokers: ["{broker.bootstrap}"]\n    traces: {{ topic: {topic} }}\n', ports)


def otelcol_export(tmp, broker, topic, ports):
    # The collector's exporter refuses (and drops) a request larger than max_message_bytes
    # (1 MB): its batches must stay under it, about 3,000 of these spans (Sightline splits a
    # larger request on the wire instead).
    return export_config(
        "otelcol", tmp, "kafka", f'    brokers: ["{broker.bootstrap}"]\n    traces: {{ topic: {topic} }}\n', ports,
        batch="{ send_batch_size: 3000, send_batch_max_size: 3000, timeout: 200ms }",
    )


def sightline_receive(tmp, broker, topic, group, sink, ports):
    return f"""
receivers:
  kafka:
    brokers: ["{broker.bootstrap}"]
    group_id: {group}
    initial_offset: earliest
    traces: {{ topics: [{topic}] }}
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink.grpc}
    tls: {{ insecure: true }}
    compression: none
service:
  telemetry:
    metrics: {{ address: "127.0.0.1:{ports['admin']}" }}
    logs: {{ level: warn }}
  pipelines:
    traces: {{ receivers: [kafka], exporters: [otlp] }}
"""


def otelcol_receive(tmp, broker, topic, group, sink, ports):
    return f"""
receivers:
  kafka:
    brokers: ["{broker.bootstrap}"]
    group_id: {group}
    initial_offset: earliest
    traces: {{ topics: [{topic}] }}
processors:
  batch: {{ send_batch_size: 8192, timeout: 200ms }}
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink.grpc}
    tls: {{ insecure: true }}
    compression: none
service:
  telemetry:
    metrics:
      readers: [{{ pull: {{ exporter: {{ prometheus: {{ host: 127.0.0.1, port: {ports['admin']} }} }} }} }}]
  pipelines:
    traces: {{ receivers: [kafka], processors: [batch], exporters: [otlp] }}
"""


def start(bins, name, tmp, config):
    ports = config.ports
    cfg = tmp / f"{name}-{uuid.uuid4().hex[:6]}.yaml"
    cfg.write_text(config.text)
    cmd = [bins["sightline"], "run", "--config", str(cfg)] if name == "sightline" else [bins["otelcol"], "--config", str(cfg)]
    log = open(tmp / f"{name}.log", "a")
    proc = subprocess.Popen(["taskset", "-c", C.SUT_CPU, *map(str, cmd)], stdout=log, stderr=log)
    ready = f"http://127.0.0.1:{ports['admin']}/" + ("readyz" if name == "sightline" else "metrics")
    if not C.wait_http(ready, 60):
        raise RuntimeError(f"{name} did not start: " + (tmp / f"{name}.log").read_text()[-3000:])
    return proc, log, ports


class Cfg:
    def __init__(self, text_fn, *a):
        self.ports = {"grpc": C.free_port(), "admin": C.free_port()}
        self.text = text_fn(*a, self.ports)


def stop(proc, log):
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def sent_spans(name, port):
    m = C.prom_values(port)
    return m.get("otelcol_exporter_sent_spans", 0.0)


def measure_export(bins, name, tmp, broker, args, topic):
    fn = sightline_export if name == "sightline" else otelcol_export
    return measure_sut(bins, name, tmp, Cfg(fn, tmp, broker, topic), args)


def measure_sut(bins, name, tmp, cfg, args, before=lambda: None, after=lambda sent: {}):
    """Starts the SUT, runs loadgen at `args.rate` into it, waits until it has sent what it
    accepted, and returns spans/s and CPU s per million spans sent (plus what `after` adds)."""
    proc, log, ports = start(bins, name, tmp, cfg)
    try:
        before()
        cpu0 = C.proc_cpu_seconds(proc.pid)
        rep = C.loadgen(bins, f"127.0.0.1:{ports['grpc']}", "traces", args, tmp, rate=args.rate)
        accepted = int(rep["items"]["accepted"])
        deadline = time.time() + 60
        while time.time() < deadline and sent_spans(name, ports["admin"]) < accepted:
            time.sleep(0.2)
        sent = sent_spans(name, ports["admin"])
        cpu1 = C.proc_cpu_seconds(proc.pid)
        return {
            "items_per_sec": float(rep["throughput"]["items_per_s"]),
            # The CPU of the whole run (warm-up included) over every span sent in it.
            "cpu_s_per_million": (cpu1 - cpu0) / max(sent, 1) * 1e6,
            "ok": sent >= accepted and C.refused(rep) == 0,
            "refused": C.refused(rep),
            "accepted": accepted,
            "sent": sent,
            **after(sent),
        }
    finally:
        stop(proc, log)


def measure_receive(bins, name, tmp, broker, topic, total):
    sink = C.Sink(bins, tmp)
    group = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    fn = sightline_receive if name == "sightline" else otelcol_receive
    cfg = Cfg(fn, tmp, broker, topic, group, sink)
    t0 = time.time()
    proc, log, ports = start(bins, name, tmp, cfg)
    try:
        cpu0 = 0.0  # from process start: the whole drain, start-up included
        last, last_t, done_t = -1, time.time(), None
        deadline = time.time() + 300
        while time.time() < deadline:
            got = int(sink.stats()["traces"]["items"])
            if got >= total:
                done_t = time.time()
                break
            if got != last:
                last, last_t = got, time.time()
            elif time.time() - last_t > 20:
                break
            time.sleep(0.05)
        cpu1 = C.proc_cpu_seconds(proc.pid)
        got = int(sink.stats()["traces"]["items"])
        elapsed = (done_t or time.time()) - t0
        return {
            "items_per_sec": got / elapsed,
            "cpu_s_per_million": (cpu1 - cpu0) / max(got, 1) * 1e6,
            "ok": got >= total,
            "received": got,
        }
    finally:
        stop(proc, log)
        sink.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--inflight", type=int, default=2)
    ap.add_argument("--items-per-request", type=int, default=500)
    ap.add_argument("--span-size", default="small")
    ap.add_argument("--rate", type=int, default=200_000, help="export: spans/s sent to the SUT (open loop)")
    ap.add_argument("--sightline-bin")
    ap.add_argument("--out")
    args = ap.parse_args()
    args.smoke, args.no_build = False, True
    bins = C.build(args)
    tmp = Path(tempfile.mkdtemp(prefix="kafka-bench-"))
    (tmp / "catalog").mkdir()
    subprocess.run([str(bins["loadgen"]), "--write-catalog", str(tmp / "catalog" / "teams.yaml")], check=True,
                   stdout=subprocess.DEVNULL)
    broker = Broker(tmp)
    results = {"export": {"sightline": [], "otelcol": []}, "receive": {"sightline": [], "otelcol": []}}
    try:
        for r in range(args.runs):
            for name in ("otelcol", "sightline"):
                res = measure_export(bins, name, tmp, broker, args, f"export-{name}-{r}")
                C.log(f"export {name} run {r}: {res}")
                results["export"][name].append(res)
        # The receive corpus: what Sightline's exporter wrote in its first export run.
        topic = "export-sightline-0"
        total = int(results["export"]["sightline"][0]["sent"])
        for r in range(args.runs):
            for name in ("otelcol", "sightline"):
                res = measure_receive(bins, name, tmp, broker, topic, total)
                C.log(f"receive {name} run {r}: {res}")
                results["receive"][name].append(res)
    finally:
        broker.stop()
    lines = [
        f"Kafka, {C.machine()}; SUT on CPU {C.SUT_CPU}, broker + load + sink on CPU {C.LOAD_CPU}; medians of {args.runs}; "
        f"export at {args.rate:,} spans/s (open loop), receive as fast as the SUT reads.",
        "",
        "| scenario | system | spans/s | CPU s / M spans | all accepted delivered |",
        "|---|---|---:|---:|---|",
    ]
    for sc in ("export", "receive"):
        med = {}
        for name in ("otelcol", "sightline"):
            rows = results[sc][name]
            med[name] = (statistics.median(x["items_per_sec"] for x in rows), statistics.median(x["cpu_s_per_million"] for x in rows))
            ok = all(x["ok"] for x in rows)
            lines.append(f"| {sc} | {name} | {med[name][0]:,.0f} | {med[name][1]:.2f} | {'yes' if ok else 'NO'} |")
        lines.append(
            f"| {sc} | **ratio S/C** | **{med['sightline'][0] / med['otelcol'][0]:.2f}x** | "
            f"**{med['otelcol'][1] / med['sightline'][1]:.1f}x less** | |"
        )
        per_run = ", ".join(
            f"{c['cpu_s_per_million']:.2f}/{s['cpu_s_per_million']:.2f}" for c, s in zip(results[sc]["otelcol"], results[sc]["sightline"])
        )
        lines.append(f"| {sc} | runs (collector/Sightline CPU) | {per_run} | | |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
