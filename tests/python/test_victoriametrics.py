"""Metrics end to end into a real VictoriaMetrics (built from its Go modules by
scripts/test.sh), read back through its Prometheus query API as Grafana reads it:
- Python SDK -> sightline (ownership) -> `otlphttp` -> VictoriaMetrics' OTLP endpoint, which
  turns resource attributes into labels (`owner.team` as is, or `owner_team` with
  `-opentelemetry.usePrometheusNaming`);
- Python SDK -> sightline -> `prometheusremotewrite` -> VictoriaMetrics' remote write endpoint,
  where the ownership labels are the exporter's own (`owner_team`)."""

import os
import subprocess

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from peer_victoriametrics import victoriametrics_factory  # noqa: F401 (fixture)


def send_metrics(sl, service: str, orders: int, extra: dict | None = None):
    """One export from `service`: a counter `checkout.orders` (`orders`, by payment method)
    and a histogram `checkout.duration` (one value, 12.5 ms)."""
    res = Resource.create({"service.name": service, **(extra or {})})
    exporter = OTLPMetricExporter(endpoint=f"127.0.0.1:{sl.grpc}", insecure=True)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    mp = MeterProvider(resource=res, metric_readers=[reader])
    meter = mp.get_meter("e2e-victoriametrics")
    meter.create_counter("checkout.orders").add(orders, {"payment.method": "card"})
    meter.create_histogram("checkout.duration", unit="ms").record(12.5)
    assert mp.force_flush(10_000)
    mp.shutdown()


def otlphttp_to(vm):
    return f"""
  otlphttp/vm:
    endpoint: http://127.0.0.1:{vm.port}/opentelemetry
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
"""


def by_team(results: list[dict], label: str) -> dict:
    return {r["metric"].get(label): float(r["value"][1]) for r in results}


def sums_by_team(vm, expr: str, label: str, expected: dict) -> dict:
    """The instant query's values by `label`, polled until they equal `expected` (an instant
    query right after ingestion may not see the newest sample yet)."""
    return by_team(vm.wait_query(expr, lambda r: by_team(r, label) == expected), label)


def test_otlphttp_metrics_reach_victoriametrics_with_ownership(sightline_factory, victoriametrics_factory):
    vm = victoriametrics_factory()
    sl = sightline_factory(exporters=otlphttp_to(vm), pipeline_exporters="[otlphttp/vm]")
    send_metrics(sl, "checkout", 3, {"owner.team": "forged"})
    send_metrics(sl, "search-api", 5)

    series = vm.wait_series('{__name__="checkout.orders"}', count=2)
    assert len(series) == 2, f"{series}\nsightline metrics:\n{sl.metrics()}"
    checkout = next(s for s in series if s.get("service.name") == "checkout")
    assert checkout["owner.team"] == "payments", checkout
    assert checkout["owner.contact"] == "#payments", checkout
    assert checkout["owner.oncall"] == "pagerduty:PAY123", checkout
    assert checkout["owner.system"] == "storefront", checkout
    assert checkout["owner.source"] == "service", checkout
    assert checkout["payment.method"] == "card", checkout
    search = next(s for s in series if s.get("service.name") == "search-api")
    assert search["owner.team"] == "search", search
    assert search["owner.source"] == "rule:1", search
    assert not vm.series('{"owner.team"="forged"}')

    # What a per-team panel asks: the volume grouped by the ownership label.
    expected = {"payments": 3.0, "search": 5.0}
    assert sums_by_team(vm, 'sum by ("owner.team") ({__name__="checkout.orders"})', "owner.team", expected) == expected
    # Every series of the histogram carries the owner too.
    hist = vm.series('{__name__=~"checkout\\\\.duration_.*", "service.name"="checkout"}')
    assert {s["__name__"] for s in hist} >= {"checkout.duration_sum", "checkout.duration_count", "checkout.duration_bucket"}, hist
    assert {s.get("owner.team") for s in hist} == {"payments"}, hist
    expected = {"payments": 12.5, "search": 12.5}
    assert sums_by_team(vm, 'sum by ("owner.team") ({__name__="checkout.duration_sum"})', "owner.team", expected) == expected


def test_otlphttp_metrics_with_prometheus_naming(sightline_factory, victoriametrics_factory):
    vm = victoriametrics_factory("-opentelemetry.usePrometheusNaming")
    sl = sightline_factory(exporters=otlphttp_to(vm), pipeline_exporters="[otlphttp/vm]")
    send_metrics(sl, "checkout", 7)

    series = vm.wait_series("checkout_orders_total")
    assert len(series) == 1, f"{series}\nsightline metrics:\n{sl.metrics()}"
    assert series[0]["owner_team"] == "payments", series
    assert series[0]["owner_source"] == "service", series
    assert series[0]["service_name"] == "checkout", series
    expected = {"payments": 7.0}
    assert sums_by_team(vm, "sum by (owner_team) (checkout_orders_total)", "owner_team", expected) == expected
    hist = vm.series('{__name__=~"checkout_duration_milliseconds_(sum|count|bucket)"}')
    assert len(hist) > 2 and {s.get("owner_team") for s in hist} == {"payments"}, hist


def remote_write_missing(tmp_path) -> str | None:
    """Why the `prometheusremotewrite` exporter cannot be tested, or None when this binary has
    it. Only its absence skips; any other validation problem fails the test later."""
    cfg = tmp_path / "validate.yaml"
    cfg.write_text(
        """
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:4317" }
exporters:
  prometheusremotewrite/vm:
    endpoint: "http://127.0.0.1:8428/api/v1/write"
service:
  pipelines:
    metrics: { receivers: [otlp], exporters: [prometheusremotewrite/vm] }
"""
    )
    out = subprocess.run(
        [os.environ["SIGHTLINE_BIN"], "validate", "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    if "unknown exporter type" in out.stderr and "prometheusremotewrite" in out.stderr:
        return out.stderr.strip()
    return None


def test_prometheusremotewrite_to_victoriametrics(tmp_path, sightline_factory, victoriametrics_factory):
    missing = remote_write_missing(tmp_path)
    if missing:
        pytest.skip(f"this sightline has no prometheusremotewrite exporter yet: {missing}")
    vm = victoriametrics_factory()
    sl = sightline_factory(
        exporters=f"""
  prometheusremotewrite/vm:
    endpoint: "http://127.0.0.1:{vm.port}/api/v1/write"
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
  file/traces:
    path: "{tmp_path}/traces.jsonl"
  file/logs:
    path: "{tmp_path}/logs.jsonl"
""",
        pipeline_exporters={"metrics": "[prometheusremotewrite/vm]"},
    )
    send_metrics(sl, "checkout", 4, {"owner.team": "forged"})
    send_metrics(sl, "search-api", 6)

    series = vm.wait_series("checkout_orders_total", count=2)
    assert len(series) == 2, f"{series}\nsightline metrics:\n{sl.metrics()}"
    checkout = next(s for s in series if s.get("job", "").endswith("checkout"))
    assert checkout["job"] == "checkout", checkout  # no service.namespace
    assert checkout["owner_team"] == "payments", checkout
    assert checkout["owner_source"] == "service", checkout
    assert checkout["owner_system"] == "storefront", checkout
    assert checkout["payment_method"] == "card", checkout
    search = next(s for s in series if s.get("job", "").endswith("search-api"))
    assert search["owner_team"] == "search", search
    assert not vm.series('{owner_team="forged"}')
    expected = {"payments": 4.0, "search": 6.0}
    assert sums_by_team(vm, "sum by (owner_team) (checkout_orders_total)", "owner_team", expected) == expected
    hist = vm.series('{__name__=~"checkout_duration_milliseconds_(sum|count|bucket)", job="checkout"}')
    assert len(hist) > 2 and {s.get("owner_team") for s in hist} == {"payments"}, hist
    # The other resource attributes (contact, on-call) are on `target_info`, to join on.
    info = vm.series('target_info{job="checkout"}')
    assert len(info) == 1, info
    assert info[0]["owner_team"] == "payments" and info[0]["owner_contact"] == "#payments", info
