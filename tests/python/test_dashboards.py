"""The Grafana dashboards in deploy/grafana/dashboards run against real data: a real
Prometheus is fed by sightline (remote write of the Python SDK's metrics, enriched with
`owner_team`, plus a scrape of sightline's own /metrics), and every PromQL expression of both
dashboards must return data, the governance row's too (a policy processor in observe mode
gives findings and series gauges, an unowned service the unowned gauges). Grafana's variables are replaced by what a user selecting "All"
gets (`$team` -> `.+`) and `$__rate_interval` by 1m."""

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import CATALOG, free_port, wait_until
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from peer_prometheus import Prometheus

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
processors:
  ownership:
    catalog: ["{tmp}/catalog"]
  quota:
    # generous: nothing is refused, but the per-team series exist as they would in production
    teams: {{ payments: {{ items_per_second: 1000000 }}, search: {{ items_per_second: 1000000 }} }}
  policy:
    # observe: nothing changes, but the findings and the series limits' gauges exist
    required_resource_attributes: [deployment.environment.name]
    cardinality: {{ max_series_per_metric: 1 }}
exporters:
  prometheusremotewrite:
    endpoint: "{write_url}"
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
  file/traces:
    path: "{tmp}/traces.jsonl"
  file/logs:
    path: "{tmp}/logs.jsonl"
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{admin}" }} }}
  pipelines:
    metrics: {{ receivers: [otlp], processors: [ownership, quota, policy], exporters: [prometheusremotewrite] }}
    traces: {{ receivers: [otlp], processors: [ownership, quota, policy], exporters: [file/traces] }}
    logs: {{ receivers: [otlp], processors: [ownership, quota, policy], exporters: [file/logs] }}
"""


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    out = []
    for p in dashboard["panels"]:
        if p.get("datasource", {}).get("type") != "prometheus":
            continue  # LogQL panels need Loki, which cannot run here (AGPL)
        for t in p["targets"]:
            out.append((f'{dashboard["title"]} / {p["title"]}', t["expr"]))
    return out


def substitute(expr: str) -> str:
    return expr.replace("$__rate_interval", "1m").replace("$team", ".+")


def send_requests(endpoint: str, service: str, codes: list[int]):
    """The OpenTelemetry HTTP server metric a service's instrumentation emits."""
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint), export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader])
    h = provider.get_meter("io.opentelemetry.http").create_histogram("http.server.request.duration", unit="s")
    for i, code in enumerate(codes):
        h.record(0.01 * (i % 7 + 1), {"http.request.method": "GET", "http.response.status_code": code})
    return provider, h


def post_trace(port: int):
    """One span over OTLP/HTTP JSON so the traces pipeline has volume too."""
    body = json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
                    "scopeSpans": [
                        {"spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "op"}]}
                    ],
                }
            ]
        }
    ).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def test_every_dashboard_query_returns_data(tmp_path):
    if "SIGHTLINE_BIN" not in os.environ:
        pytest.fail("SIGHTLINE_BIN must point at the sightline binary (scripts/test.sh sets it)")
    grpc, http, admin = free_port(), free_port(), free_port()
    (tmp_path / "prom").mkdir()
    prom = Prometheus(tmp_path / "prom", scrape=[f"127.0.0.1:{admin}"])
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "teams.yaml").write_text(CATALOG)
    cfg = tmp_path / "sightline.yaml"
    cfg.write_text(CONFIG.format(grpc=grpc, http=http, admin=admin, tmp=tmp_path, write_url=prom.write_url))
    stderr = open(tmp_path / "stderr.log", "w")
    proc = subprocess.Popen([os.environ["SIGHTLINE_BIN"], "run", "--config", str(cfg)], stderr=stderr)
    try:
        assert wait_until(lambda: prom.query(f'up{{instance="127.0.0.1:{admin}"}} == 1') != [], 60), (
            tmp_path / "stderr.log"
        ).read_text()
        endpoint = f"http://127.0.0.1:{http}/v1/metrics"
        # Two owned services (one with server errors) and one nobody owns; cumulative
        # histograms exported twice, so that rate() has two samples of each series.
        senders = [
            send_requests(endpoint, "checkout", [200] * 20 + [500] * 2),
            send_requests(endpoint, "search-api", [200] * 30),
            send_requests(endpoint, "legacy-batch", [200, 503]),
        ]
        for provider, _ in senders:
            assert provider.force_flush(10_000)
        post_trace(http)
        time.sleep(2)  # a second scrape and a second remote-write sample, 1 s+ apart
        for provider, h in senders:
            h.record(0.02, {"http.request.method": "GET", "http.response.status_code": 500})
            assert provider.force_flush(10_000)
        post_trace(http)

        failures = []
        queries = [q for f in sorted(DASHBOARDS.glob("*.json")) for q in expressions(json.loads(f.read_text()))]
        assert len(queries) >= 20, queries

        def all_have_data():
            failures.clear()
            for where, expr in queries:
                if prom.query(substitute(expr)) == []:
                    failures.append(f"{where}: {expr}")
            return not failures

        # Prometheus scrapes every second; give the rate windows a few scrapes.
        assert wait_until(all_have_data, 60), "queries without data:\n" + "\n".join(failures)
        for provider, _ in senders:
            provider.shutdown()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        stderr.close()
        prom.stop()
