"""A real Jaeger v2 (built from its Go modules by scripts/test.sh into .peers/jaeger, or
JAEGER_BIN): an OTLP gRPC receiver, in-memory storage and the query API, each on a free
loopback port, and a small client for the query API."""

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, wait_until
from peers import ROOT, PeerProcess, peer_binary

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


class Jaeger(PeerProcess):
    NAME = "Jaeger"

    def __init__(self, tmp: Path):
        self.otlp, self.query_port, query_grpc = free_port(), free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.query_port}"
        cfg = tmp / "jaeger.yaml"
        cfg.write_text(CONFIG.format(otlp=self.otlp, query=self.query_port, query_grpc=query_grpc))
        # No OTEL_* from the environment: Jaeger must not export anything of its own.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        binary = peer_binary(self.NAME, "JAEGER_BIN", ROOT / ".peers" / "jaeger")
        self.start([binary, "--config", str(cfg)], tmp / "jaeger.log", env=env)

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


@pytest.fixture
def jaeger(tmp_path):
    """A started Jaeger. Its log is printed at teardown, which pytest shows when the test
    failed."""
    d = tmp_path / "jaeger"
    d.mkdir()
    j = Jaeger(d)
    yield j
    j.stop()
    j.print_log()
