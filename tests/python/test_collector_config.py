"""The typical collector config of issue 11 (memory_limiter percentages, batch, resource,
attributes, filter, health_check, telemetry readers) loads unchanged in `sightline validate` and
runs end to end with the Python SDK. The run binds the health check to a free loopback port
instead of 0.0.0.0:13133 (tests listen on loopback only); nothing else is changed."""

import json
import subprocess
import urllib.request

from conftest import free_port, wait_until
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from peers import ROOT, peer_binary

PROCESSORS_AND_EXTENSIONS = """
processors:
  memory_limiter: { check_interval: 1s, limit_percentage: 80, spike_limit_percentage: 25 }
  batch: { send_batch_size: 8192, timeout: 200ms }
  resource:
    attributes:
      - { key: deployment.environment.name, value: prod, action: upsert }
  attributes/scrub:
    actions:
      - { key: http.request.header.authorization, action: delete }
  filter/health:
    error_mode: ignore
    traces:
      span:
        - 'attributes["http.route"] == "/healthz"'
extensions:
  health_check: { endpoint: 0.0.0.0:13133 }
"""


def config(grpc, admin, out, health="0.0.0.0:13133"):
    return f"""
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
{PROCESSORS_AND_EXTENSIONS.replace("0.0.0.0:13133", health)}
exporters:
  file: {{ path: "{out}" }}
service:
  extensions: [health_check]
  telemetry:
    metrics:
      readers:
        - pull: {{ exporter: {{ prometheus: {{ host: 127.0.0.1, port: {admin} }} }} }}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, resource, attributes/scrub, filter/health, batch]
      exporters: [file]
"""


def test_the_config_validates_unchanged(tmp_path):
    binary = peer_binary("sightline", "SIGHTLINE_BIN", ROOT / "target/release/sightline")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config(free_port(), free_port(), tmp_path / "out.jsonl"))
    r = subprocess.run([binary, "validate", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_config_runs_with_the_python_sdk(tmp_path):
    binary = peer_binary("sightline", "SIGHTLINE_BIN", ROOT / "target/release/sightline")
    grpc, admin, health = free_port(), free_port(), free_port()
    out = tmp_path / "traces.jsonl"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config(grpc, admin, out, f"127.0.0.1:{health}"))
    log = open(tmp_path / "sightline.log", "w")
    proc = subprocess.Popen([binary, "run", "--config", str(cfg)], stdout=log, stderr=log)
    try:
        def healthy():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False
        assert wait_until(healthy, 30), (tmp_path / "sightline.log").read_text()[-3000:]
        provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{grpc}", insecure=True)))
        tracer = provider.get_tracer("e2e")
        for route in ["/healthz", "/checkout", "/healthz", "/cart"]:
            with tracer.start_as_current_span(f"GET {route}") as s:
                s.set_attribute("http.route", route)
                s.set_attribute("http.request.header.authorization", "Bearer secret")
        assert provider.force_flush(10_000)
        provider.shutdown()

        def spans():
            rows = []
            if out.exists():
                for line in out.read_text().splitlines():
                    for rs in json.loads(line).get("resourceSpans", []):
                        res = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
                        for ss in rs.get("scopeSpans", []):
                            for sp in ss.get("spans", []):
                                rows.append((res, sp))
            return rows
        assert wait_until(lambda: len(spans()) >= 2, 20)
        rows = spans()
        assert sorted(sp["name"] for _, sp in rows) == ["GET /cart", "GET /checkout"]
        for res, sp in rows:
            assert res["deployment.environment.name"] == {"stringValue": "prod"}
            keys = [a["key"] for a in sp.get("attributes", [])]
            assert "http.request.header.authorization" not in keys and "http.route" in keys
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'otelcol_processor_filter_spans_filtered{processor="filter/health"} 2' in metrics, metrics
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
