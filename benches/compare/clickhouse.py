#!/usr/bin/env python3
"""ClickHouse, side by side: Sightline's `clickhouse` exporter against the collector's (contrib
v0.165.1 clickhouseexporter over clickhouse-go v2.47's HTTP transport), both writing to one
counting endpoint, in one run.

    python3 benches/compare/clickhouse.py --runs 3 --duration 8

The endpoint (tests/python/peer_chdb.py with `count_only`) answers what an inserting client
asks before its inserts from ClickHouse's own
engine (chDB, from PyPI: the DDL, clickhouse-go's `SELECT displayName(), version(), revision(),
timezone()` hello and its `DESCRIBE TABLE` before every batch, in `Native` format and, with
`compress=1`, in ClickHouse's LZ4 blocks; Sightline's one `DESCRIBE ... FORMAT TabSeparated`),
and answers every INSERT with 200 after reading and counting its body, without parsing it:
the database is not what is measured, and it never slows either exporter down.

With --rotel, rotel's clickhouse exporter (the binary in its PyPI wheel, its defaults) runs
too, on the same endpoint.

Load: loadgen (open loop at --rate spans/s, default 100,000) -> SUT: ownership (Sightline)
or the resource processor and the batch processor (the collector: 8192 spans or 200 ms), then
the clickhouse exporter with its defaults (compress lz4, async_insert, create_schema). The
SUT is pinned to CPU 0; loadgen and the endpoint to CPU 1. Reported: spans/s accepted, CPU s
per million spans sent (from the SUT's own sent counter), and the bytes each system sent per
span. Medians of --runs; quote the ratio (the endpoint shares a core with the load).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "python"))
import compare as C  # noqa: E402
import kafka as K  # noqa: E402  (start/stop/Cfg/sent_spans are the same here)
from peer_chdb import ClickHouse  # noqa: E402


def config(name, tmp, endpoint, database, ports):
    return K.export_config(name, tmp, "clickhouse", f"    endpoint: {endpoint.url}\n    database: {database}\n", ports)


def measure(bins, name, tmp, endpoint, args, run):
    def before():
        with endpoint.lock:
            endpoint.inserts.clear()
            endpoint.insert_bytes = 0

    def after(sent):
        with endpoint.lock:
            inserts, nbytes = len(endpoint.inserts), endpoint.insert_bytes
        return {"bytes_per_span": nbytes / max(sent, 1), "inserts": inserts}

    cfg = K.Cfg(lambda *a: config(name, *a), tmp, endpoint, f"{name}_{run}")
    res = K.measure_sut(bins, name, tmp, cfg, args, before, after)
    res["ok"] = res["ok"] and res["inserts"] > 0
    return res


def measure_rotel(bins, tmp, endpoint, args, run):
    """rotel's clickhouse exporter (from its PyPI wheel) with its defaults (lz4, async insert).
    rotel has no metrics endpoint: its spans are the ones loadgen saw accepted, counted once its
    inserts have stopped growing for two seconds."""
    grpc, http = C.free_port(), C.free_port()
    cmd = [bins["rotel"], "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc}", "--otlp-http-endpoint", f"127.0.0.1:{http}",
           "--exporter", "clickhouse", "--clickhouse-exporter-endpoint", endpoint.url,
           "--clickhouse-exporter-database", f"rotel_{run}", "--otel-resource-attributes", "owner.team=platform"]
    log = open(tmp / "rotel.log", "a")
    proc = subprocess.Popen(["taskset", "-c", C.SUT_CPU, *map(str, cmd)], stdout=log, stderr=log)
    try:
        if not C.wait_tcp(grpc, 60):
            raise RuntimeError("rotel did not start: " + (tmp / "rotel.log").read_text()[-3000:])
        with endpoint.lock:
            endpoint.inserts.clear()
            endpoint.insert_bytes = 0
        cpu0 = C.proc_cpu_seconds(proc.pid)
        rep = C.loadgen(bins, f"127.0.0.1:{grpc}", "traces", args, tmp, rate=args.rate)
        accepted = int(rep["items"]["accepted"]) + int(args.warmup * args.rate)
        last, still = -1, 0
        for _ in range(300):
            with endpoint.lock:
                now = endpoint.insert_bytes
            still = still + 1 if now == last else 0
            if still >= 10:
                break
            last = now
            time.sleep(0.2)
        cpu1 = C.proc_cpu_seconds(proc.pid)
        with endpoint.lock:
            inserts, nbytes = len(endpoint.inserts), endpoint.insert_bytes
        return {
            "items_per_sec": float(rep["throughput"]["items_per_s"]),
            "cpu_s_per_million": (cpu1 - cpu0) / max(accepted, 1) * 1e6,
            "bytes_per_span": nbytes / max(accepted, 1),
            "inserts": inserts,
            "ok": C.refused(rep) == 0 and inserts > 0,
            "accepted": accepted,
        }
    finally:
        K.stop(proc, log)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--inflight", type=int, default=2)
    ap.add_argument("--items-per-request", type=int, default=500)
    ap.add_argument("--span-size", default="small")
    ap.add_argument("--rate", type=int, default=100_000, help="spans/s sent to the SUT (open loop)")
    ap.add_argument("--sightline-bin")
    ap.add_argument("--otelcol-bin", help="a collector with the clickhouse exporter (default .peers/otelcol)")
    ap.add_argument("--rotel", action="store_true", help="also rotel's clickhouse exporter (its PyPI wheel)")
    ap.add_argument("--out")
    args = ap.parse_args()
    args.smoke, args.no_build = False, True
    bins = C.build(args)
    if args.otelcol_bin:
        bins["otelcol"] = Path(args.otelcol_bin)
    os.sched_setaffinity(0, {int(C.LOAD_CPU)})  # the endpoint's threads share the load's core
    tmp = Path(tempfile.mkdtemp(prefix="clickhouse-bench-"))
    (tmp / "catalog").mkdir()
    subprocess.run([str(bins["loadgen"]), "--write-catalog", str(tmp / "catalog" / "teams.yaml")], check=True,
                   stdout=subprocess.DEVNULL)
    endpoint = ClickHouse(tmp / "chdb", count_only=True)
    names = ("otelcol", "rotel", "sightline") if args.rotel else ("otelcol", "sightline")
    results = {n: [] for n in names}
    try:
        for r in range(args.runs):
            for name in names:
                if name == "rotel":
                    res = measure_rotel(bins, tmp, endpoint, args, r)
                else:
                    res = measure(bins, name, tmp, endpoint, args, r)
                C.log(f"{name} run {r}: {res}")
                results[name].append(res)
    finally:
        endpoint.stop()
    lines = [
        f"ClickHouse export, {C.machine()}; SUT on CPU {C.SUT_CPU}, load + counting endpoint on CPU {C.LOAD_CPU}; "
        f"medians of {args.runs}; {args.rate:,} spans/s ({args.span_size} spans, open loop); exporter defaults (lz4).",
        "",
        "| system | spans/s | CPU s / M spans | bytes sent / span | all accepted sent |",
        "|---|---:|---:|---:|---|",
    ]
    med = {}
    for name in names:
        rows = results[name]
        med[name] = [statistics.median(x[k] for x in rows) for k in ("items_per_sec", "cpu_s_per_million", "bytes_per_span")]
        ok = all(x["ok"] for x in rows)
        lines.append(f"| {name} | {med[name][0]:,.0f} | {med[name][1]:.2f} | {med[name][2]:.0f} | {'yes' if ok else 'NO'} |")
    lines.append(f"| **ratio** | | **{med['otelcol'][1] / med['sightline'][1]:.1f}x less CPU** than the collector | | |")
    if "rotel" in med:
        lines.append(f"| **ratio** | | **{med['rotel'][1] / med['sightline'][1]:.1f}x less CPU** than rotel | | |")
    per_run = ", ".join(f"{c['cpu_s_per_million']:.2f}/{s['cpu_s_per_million']:.2f}" for c, s in zip(results["otelcol"], results["sightline"]))
    lines.append(f"| runs (collector/Sightline CPU) | {per_run} | | | |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
