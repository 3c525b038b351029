"""Harness for end-to-end tests with the Python OpenTelemetry SDK: runs the real sightline
binary (SIGHTLINE_BIN, built by scripts/test.sh) on free loopback ports."""

import os
from contextlib import contextmanager
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

CATALOG = """
teams:
  - name: payments
    contact: "#payments"
    oncall: "pagerduty:PAY123"
  - name: search
services:
  - name: checkout
    team: payments
    system: storefront
rules:
  - match: { service.name: "regex:search-(api|indexer)" }
    team: search
"""


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never one this process handed out before: the kernel may
    give a port that was just released again, and two of one process's servers would then
    collide (a CI run saw an admin and a gRPC endpoint get the same port)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def complete_lines(path) -> list[str]:
    """The lines of a file another process is appending to, without a last line it has not
    finished writing (the file exporter ends every line with a newline)."""
    return Path(path).read_text().split("\n")[:-1]


def wait_until(pred, timeout=20.0, interval=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def stop_process(proc: subprocess.Popen, log=None):
    """SIGTERM, then SIGKILL if it has not exited within 30 s; closes its log file."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if log is not None:
        log.close()


def admin_ready(port: int) -> bool:
    """Whether Sightline's admin server on `port` answers /readyz with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def admin_metrics(port: int) -> str:
    """Sightline's /metrics text from its admin server on `port`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


DEFAULT_EXPORTERS = """
  file/traces:
    path: "{tmp}/traces.jsonl"
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
  file/logs:
    path: "{tmp}/logs.jsonl"
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
  file/metrics:
    path: "{tmp}/metrics.jsonl"
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
"""


class Sightline:
    """sightline with the test catalog; by default one file exporter per signal, or the given
    exporters (YAML under `exporters:`) used by every pipeline."""

    def __init__(
        self,
        tmp: Path,
        exporters: str | None = None,
        pipeline_exporters: str | dict | None = None,
        protocol_extra: str = "",
        http_extra: str = "",
        grpc_extra: str = "",
        extra_receivers: str = "",
        pipeline_receivers: str = "[otlp]",
        extra_processors: str = "",
        ports: tuple[int, int, int] | None = None,
    ):
        """`protocol_extra`: more flow-mapping entries for both protocols, e.g. `tls: {...}`;
        `http_extra` / `grpc_extra`: for one protocol only."""
        self.tmp = tmp
        extra = f", {protocol_extra}" if protocol_extra else ""
        hextra = extra + (f", {http_extra}" if http_extra else "")
        gextra = extra + (f", {grpc_extra}" if grpc_extra else "")
        if exporters is None:
            exporters = DEFAULT_EXPORTERS.format(tmp=tmp)
        # `@TMP@` in given exporters is this instance's directory (e.g. the default file
        # exporters next to another one: DEFAULT_EXPORTERS.format(tmp="@TMP@")).
        exporters = exporters.replace("@TMP@", str(tmp))
        pe = {s: pipeline_exporters or f"[file/{s}]" for s in ("traces", "logs", "metrics")}
        if isinstance(pipeline_exporters, dict):  # per signal, e.g. {"metrics": "[x]"}
            pe = {s: pipeline_exporters.get(s, f"[file/{s}]") for s in pe}
        # `ports` (grpc, http, admin): to come back on the ports of an instance that was stopped.
        self.grpc, self.http, self.admin = ports or (free_port(), free_port(), free_port())
        (tmp / "catalog").mkdir(exist_ok=True)
        (tmp / "catalog" / "teams.yaml").write_text(CATALOG)
        config = f"""
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{self.grpc}"{gextra} }}
      http: {{ endpoint: "127.0.0.1:{self.http}"{hextra} }}
{extra_receivers}
processors:
  ownership:
    catalog: ["{tmp}/catalog"]
{extra_processors}
exporters:
{exporters}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{self.admin}" }} }}
  pipelines:
    traces: {{ receivers: {pipeline_receivers}, processors: [ownership], exporters: {pe["traces"]} }}
    logs: {{ receivers: {pipeline_receivers}, processors: [ownership], exporters: {pe["logs"]} }}
    metrics: {{ receivers: {pipeline_receivers}, processors: [ownership], exporters: {pe["metrics"]} }}
"""
        cfg = tmp / "sightline.yaml"
        cfg.write_text(config)
        self.stderr = open(tmp / "stderr.log", "w")
        self.proc = subprocess.Popen(
            [os.environ["SIGHTLINE_BIN"], "run", "--config", str(cfg)], stderr=self.stderr
        )
        assert wait_until(lambda: self.ready() or self.proc.poll() is not None, 30)
        assert self.proc.poll() is None, (tmp / "stderr.log").read_text()
        assert self.ready(), (tmp / "stderr.log").read_text()

    def ready(self) -> bool:
        return admin_ready(self.admin)

    def metrics(self) -> str:
        return admin_metrics(self.admin)

    def stop(self):
        stop_process(self.proc, self.stderr)


@pytest.fixture
def sightline(tmp_path):
    if "SIGHTLINE_BIN" not in os.environ:
        pytest.fail("SIGHTLINE_BIN must point at the sightline binary (scripts/test.sh sets it)")
    s = Sightline(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def sightline_factory(tmp_path):
    """Starts sightline with custom exporters; needs OTELCOL_BIN too for collector tests."""
    for var in ("SIGHTLINE_BIN", "OTELCOL_BIN"):
        if var not in os.environ:
            pytest.fail(f"{var} must be set (scripts/test.sh sets it)")
    started = []

    def make(**kw):
        d = tmp_path / f"sightline{len(started)}"
        d.mkdir()
        s = Sightline(d, **kw)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@contextmanager
def collector(tmp_path, components, pipelines, metrics_port=None):
    """The real collector (OTELCOL_BIN) with `components` (its receivers and exporters YAML)
    and `pipelines` (name -> "{ receivers: [...], exporters: [...] }"), its own metrics served
    on `metrics_port` (a free port when none); ready when entered, stopped on exit. Yields the
    path of its output."""
    cfg = tmp_path / "otelcol.yaml"
    cfg.write_text(
        f"""{components}
service:
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus: {{ host: "127.0.0.1", port: {metrics_port or free_port()} }}
  pipelines:
{"".join(f"    {s}: {p}{chr(10)}" for s, p in pipelines.items())}"""
    )
    log_path = tmp_path / "otelcol.log"
    with open(log_path, "w") as log:
        col = subprocess.Popen([os.environ["OTELCOL_BIN"], "--config", str(cfg)], stderr=log, stdout=log)
        try:
            assert wait_until(lambda: b"Everything is ready" in log_path.read_bytes() or col.poll() is not None, 60)
            assert col.poll() is None, log_path.read_text()
            yield log_path
        finally:
            col.terminate()
            try:
                col.wait(timeout=20)
            except subprocess.TimeoutExpired:
                col.kill()
