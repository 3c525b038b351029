"""A real Jaeger v2 (built from its Go modules by scripts/test.sh into .peers/jaeger, or
JAEGER_BIN): an OTLP gRPC receiver, in-memory storage and the query API, each on a free
loopback port, and a small client for the query API."""

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics: {{ level: none }}
    logs: {{ level: info }}
extensions:
  jaeger_storage:
    backends:
      mem:
        memory: {{ max_traces: 10000 }}
  jaeger_query:
    storage: {{ traces: mem }}
    enable_tracing: false
    http: {{ endpoint: "127.0.0.1:{query}" }}
    grpc: {{ endpoint: "127.0.0.1:{query_grpc}" }}
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{otlp}" }}
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
"""


def binary() -> str:
    path = os.environ.get("JAEGER_BIN", str(ROOT / ".peers" / "jaeger"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"Jaeger binary not found at {path} (scripts/test.sh builds it)")
    return path


class Jaeger:
    def __init__(self, tmp: Path):
        self.otlp, self.query_port, query_grpc = free_port(), free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.query_port}"
        cfg = tmp / "jaeger.yaml"
        cfg.write_text(CONFIG.format(otlp=self.otlp, query=self.query_port, query_grpc=query_grpc))
        self.log_path = tmp / "jaeger.log"
        self.log = open(self.log_path, "w")
        # No OTEL_* from the environment: Jaeger must not export anything of its own.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        self.proc = subprocess.Popen(
            [binary(), "--config", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        if not wait_until(lambda: self.ready() or self.proc.poll() is not None, 60) or self.proc.poll() is not None:
            text = self.log_text()
            self.stop()
            pytest.fail(f"Jaeger did not start:\n{text}")

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text()[-6000:]

    def ready(self) -> bool:
        if b"Everything is ready" not in self.log_path.read_bytes():
            return False
        try:
            self.get("/api/services")
            return True
        except OSError:
            return False

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.base}{path}", timeout=10) as r:
            return json.loads(r.read())

    def trace(self, trace_id: str) -> dict | None:
        """The trace in Jaeger's query API JSON (`data[0]`: spans and processes), or None
        while it is not stored."""
        try:
            data = self.get(f"/api/traces/{trace_id}").get("data") or []
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        return data[0] if data else None

    def wait_trace(self, trace_id: str, spans: int = 1, timeout: float = 30) -> dict | None:
        found: list[dict] = []

        def arrived():
            t = self.trace(trace_id)
            if t is not None and len(t.get("spans", [])) >= spans:
                found[:] = [t]
                return True
            return False

        wait_until(arrived, timeout)
        return found[0] if found else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def jaeger(tmp_path):
    """A started Jaeger. Its log is printed at teardown, which pytest shows when the test
    failed."""
    d = tmp_path / "jaeger"
    d.mkdir()
    j = Jaeger(d)
    yield j
    j.stop()
    print(f"--- Jaeger log ({j.log_path}) ---\n{j.log_path.read_text()[-6000:]}")
