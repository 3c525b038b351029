"""Overload, with real processes: loadgen offers about three times what a slow backend lets
sightline deliver. Asserted as counts, never timings:
- the excess is refused with the retryable codes (gRPC RESOURCE_EXHAUSTED with RetryInfo, or
  UNAVAILABLE when the exporter queue is full), not dropped after being accepted;
- every accepted span reaches the sink;
- sightline's peak RSS stays within the configured memory budget + 20%;
- when the load falls, everything offered is accepted again.

The backend is the bench tools' `sink` with a fixed delay per request, and the exporter has
two consumers, so sightline's sustainable rate is bounded by the backend; the offered rate is
chosen as three times the rate measured in a closed-loop calibration run."""

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, wait_until

BUDGET_MIB = 128

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  memory_limiter: {{ limit_mib: {budget} }}
  ownership: {{ catalog: ["{catalog}"] }}
exporters:
  otlp/sink:
    endpoint: "127.0.0.1:{sink}"
    tls: {{ insecure: true }}
    compression: none
    sending_queue: {{ num_consumers: 2 }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{admin}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [memory_limiter, ownership], exporters: [otlp/sink] }}
"""


def binaries():
    root = Path(__file__).resolve().parents[2]
    out = {}
    for name, env in (("loadgen", "LOADGEN_BIN"), ("sink", "SINK_BIN"), ("sightline", "SIGHTLINE_BIN")):
        target = Path(os.environ.get("CARGO_TARGET_DIR") or root / "target")
        path = os.environ.get(env) or str(target / "release" / name)
        if not Path(path).exists():
            pytest.fail(f"{name} not found at {path}: scripts/test.sh builds it (cargo build --release)")
        out[name] = path
    return out


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def metric(admin, series):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(series):
                return float(line.rsplit(" ", 1)[1])
    return None


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def loadgen(bins, grpc, tmp, name, *args):
    out = tmp / f"{name}.json"
    cmd = [bins["loadgen"], "--endpoint", f"127.0.0.1:{grpc}", "--warmup", "0s", "--json", str(out), *args]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    return json.loads(out.read_text())


def test_overload_refuses_the_excess_delivers_the_accepted_and_stays_in_budget(tmp_path):
    bins = binaries()
    grpc, admin, sink_grpc, sink_http, sink_admin = (free_port() for _ in range(5))
    subprocess.run([bins["loadgen"], "--write-catalog", str(tmp_path / "catalog.yaml")], check=True, stdout=subprocess.DEVNULL)
    sink_log = open(tmp_path / "sink.log", "w")
    sink = subprocess.Popen(
        [bins["sink"], "--grpc", f"127.0.0.1:{sink_grpc}", "--http", f"127.0.0.1:{sink_http}",
         "--admin", f"127.0.0.1:{sink_admin}", "--delay", "100ms"],
        stdout=sink_log, stderr=subprocess.STDOUT,
    )
    cfg = tmp_path / "sightline.yaml"
    cfg.write_text(CONFIG.format(grpc=grpc, admin=admin, sink=sink_grpc, budget=BUDGET_MIB, catalog=tmp_path / "catalog.yaml"))
    stderr = open(tmp_path / "stderr.log", "w")
    sl = subprocess.Popen([bins["sightline"], "run", "--config", str(cfg)], stderr=stderr)
    try:
        ready = lambda: metric(admin, "otelcol_receiver_accepted_spans") is not None  # noqa: E731
        assert wait_until(lambda: _ok(ready), 30), (tmp_path / "stderr.log").read_text()
        sink_stats = f"http://127.0.0.1:{sink_admin}/stats"
        assert wait_until(lambda: _ok(lambda: get_json(sink_stats)), 30)

        # Calibration: what the slow backend lets through, closed loop, modest concurrency.
        cal = loadgen(bins, grpc, tmp_path, "calibration", "--connections", "4", "--duration", "5s")
        sustainable = cal["items"]["accepted"] / cal["duration_s"]
        assert sustainable > 0, cal

        # Overload: three times that, open loop.
        offered = int(3 * sustainable)
        over = loadgen(bins, grpc, tmp_path, "overload", "--rate", str(offered), "--connections", "16", "--duration", "15s")
        print(f"sustainable {sustainable:.0f} spans/s, offered {offered} spans/s; overload run: {over['items']}, "
              f"refusals {over['refusals']}, errors {over['errors']}")
        assert over["items"]["refused"] > 0, "3x the sustainable rate must be refused in part"
        assert set(over["refusals"]) <= {"RESOURCE_EXHAUSTED", "UNAVAILABLE"}, over["refusals"]
        assert over["requests"]["errors"] == 0, over["errors"]

        peak = peak_rss_mib(sl.pid)
        print(f"peak RSS {peak:.1f} MiB for a budget of {BUDGET_MIB} MiB")
        assert peak <= BUDGET_MIB * 1.2, f"peak RSS {peak:.1f} MiB over budget + 20% ({BUDGET_MIB * 1.2} MiB)"

        # Recovery: a third of the sustainable rate is accepted in full.
        low = loadgen(bins, grpc, tmp_path, "recovery", "--rate", str(int(sustainable / 3)), "--connections", "2", "--duration", "5s")
        assert low["items"]["refused"] == 0 and low["items"]["accepted"] == low["items"]["sent"] > 0, low["items"]

        # Everything accepted is delivered: sightline's accepted count, what its exporter sent
        # and what the sink received agree once the queue has drained.
        accepted = metric(admin, 'otelcol_receiver_accepted_spans{receiver="otlp",transport="grpc"}')
        client_accepted = cal["items"]["accepted"] + over["items"]["accepted"] + low["items"]["accepted"]
        assert accepted == client_accepted
        assert wait_until(lambda: get_json(sink_stats)["traces"]["items"] == accepted, 60), (
            get_json(sink_stats)["traces"]["items"], accepted)
        assert wait_until(lambda: metric(admin, 'otelcol_exporter_sent_spans{exporter="otlp/sink"}') == accepted, 30)
        assert metric(admin, 'otelcol_exporter_enqueue_failed_spans{exporter="otlp/sink"}') == 0
    finally:
        sl.terminate()
        sl.wait(timeout=30)
        sink.terminate()
        sink.wait(timeout=30)
        stderr.close()
        sink_log.close()


def _ok(f):
    try:
        return bool(f())
    except OSError:
        return False
