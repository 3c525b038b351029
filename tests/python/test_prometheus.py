"""End to end with a real Prometheus (3.16): the Python SDK sends a counter, a gauge and a
histogram from `checkout` (owned by `payments` in the test catalog) through
otlp -> ownership -> prometheusremotewrite, with Remote Write 1.0 and with 2.0, and Prometheus'
query API must show them with `owner_team`, `job`, the right values and a working
`histogram_quantile`."""

import os
import subprocess

import pytest
from conftest import DEFAULT_EXPORTERS, Sightline, wait_until
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from peer_prometheus import Prometheus

EXPORTER = """
  prometheusremotewrite:
    endpoint: "{url}"
    headers: {{ X-Scope-OrgID: e2e }}
    sending_queue: {{ num_consumers: 4, batch: {{ flush_timeout: 50ms }} }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms }}
    protobuf_message: {message}
"""

V1 = "prometheus.WriteRequest"
V2 = "io.prometheus.write.v2.Request"


@pytest.fixture
def prometheus(tmp_path):
    if "SIGHTLINE_BIN" not in os.environ:
        pytest.fail("SIGHTLINE_BIN must point at the sightline binary (scripts/test.sh sets it)")
    d = tmp_path / "prometheus"
    d.mkdir()
    p = Prometheus(d)
    yield p
    p.stop()


@pytest.fixture(params=[V1, V2], ids=["rw1", "rw2"])
def sightline_prw(request, tmp_path, prometheus):
    d = tmp_path / "sightline"
    d.mkdir()
    exporters = DEFAULT_EXPORTERS.format(tmp=d) + EXPORTER.format(url=prometheus.write_url, message=request.param)
    s = Sightline(d, exporters=exporters, pipeline_exporters={"metrics": "[prometheusremotewrite]"})
    s.protobuf_message = request.param
    yield s
    s.stop()


def value(result) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_counter_gauge_histogram_reach_prometheus_with_owner(prometheus, sightline_prw):
    resource = Resource.create({"service.name": "checkout", "service.instance.id": "pod-1", "owner.team": "forged"})
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"http://127.0.0.1:{sightline_prw.http}/v1/metrics"),
        export_interval_millis=3_600_000,
    )
    provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        views=[View(instrument_name="checkout.duration", aggregation=ExplicitBucketHistogramAggregation([5, 10, 25, 50]))],
    )
    meter = provider.get_meter("e2e.checkout", "0.1")
    orders = meter.create_counter("orders", unit="{order}")
    orders.add(3, {"payment.method": "card"})
    orders.add(4, {"payment.method": "card"})
    meter.create_observable_gauge(
        "temperature", unit="Cel", callbacks=[lambda _options: [Observation(21.5, {"room": "a"})]]
    )
    duration = meter.create_histogram("checkout.duration", unit="ms")
    for v in (3, 7, 7, 30):
        duration.record(v)
    assert provider.force_flush(10_000)

    sel = '{owner_team="payments", job="checkout"}'
    assert wait_until(lambda: prometheus.query(f"orders_total{sel}") != [], 30), (
        sightline_prw.tmp / "stderr.log"
    ).read_text()

    counter = prometheus.query(f"orders_total{sel}")
    assert value(counter) == 7
    labels = counter[0]["metric"]
    assert labels["instance"] == "pod-1"
    assert labels["payment_method"] == "card"
    assert labels["owner_source"] == "service"
    assert labels["otel_scope_name"] == "e2e.checkout"
    assert labels["otel_scope_version"] == "0.1"

    assert value(prometheus.query(f'temperature_celsius{{owner_team="payments", room="a"}}')) == 21.5

    assert value(prometheus.query(f"checkout_duration_milliseconds_count{sel}")) == 4
    assert value(prometheus.query(f"checkout_duration_milliseconds_sum{sel}")) == 47
    assert value(prometheus.query(f'checkout_duration_milliseconds_bucket{{owner_team="payments", le="+Inf"}}')) == 4
    # Buckets (0,5]:1 (5,10]:2 (10,25]:0 (25,50]:1 -> rank 2 of 4 falls in (5,10]:
    # 5 + (10-5) * (2-1)/(3-1) = 7.5.
    q = prometheus.query(f"histogram_quantile(0.5, checkout_duration_milliseconds_bucket{sel})")
    assert value(q) == pytest.approx(7.5)

    info = prometheus.query('target_info{job="checkout", instance="pod-1"}')
    assert value(info) == 1
    assert info[0]["metric"]["telemetry_sdk_language"] == "python"
    assert info[0]["metric"]["owner_contact"] == "#payments"

    m = sightline_prw.metrics()
    assert 'otelcol_exporter_sent_metric_points{exporter="prometheusremotewrite"}' in m
    assert 'sightline_exporter_dropped_points_total{exporter="prometheusremotewrite",reason="delta_temporality"} 0' in m
    # Remote Write 2.0: Prometheus' X-Prometheus-Remote-Write-Samples-Written matched what was sent.
    assert 'sightline_exporter_dropped_points_total{exporter="prometheusremotewrite",reason="rejected_by_backend"} 0' in m
    provider.shutdown()


def test_prometheusremotewrite_in_a_traces_pipeline_is_a_config_error(tmp_path):
    if "SIGHTLINE_BIN" not in os.environ:
        pytest.fail("SIGHTLINE_BIN must point at the sightline binary (scripts/test.sh sets it)")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        """
receivers:
  otlp: { protocols: { grpc: { endpoint: "127.0.0.1:0" } } }
exporters:
  prometheusremotewrite: { endpoint: "http://127.0.0.1:9/api/v1/write" }
service:
  pipelines:
    traces: { receivers: [otlp], exporters: [prometheusremotewrite] }
"""
    )
    r = subprocess.run([os.environ["SIGHTLINE_BIN"], "validate", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "service.pipelines.traces.exporters" in r.stderr, r.stderr
    assert '"prometheusremotewrite" supports metrics pipelines only' in r.stderr, r.stderr


@pytest.mark.parametrize("message", [V1, V2], ids=["rw1", "rw2"])
def test_exponential_histogram_becomes_a_native_histogram(tmp_path, message):
    """With `send_native_histograms: true` (and Prometheus' native-histograms feature), an SDK
    exponential histogram arrives as one native histogram series."""
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

    if "SIGHTLINE_BIN" not in os.environ:
        pytest.fail("SIGHTLINE_BIN must point at the sightline binary (scripts/test.sh sets it)")
    (tmp_path / "p").mkdir()
    (tmp_path / "s").mkdir()
    prom = Prometheus(tmp_path / "p", native_histograms=True)
    s = None
    try:
        exporters = DEFAULT_EXPORTERS.format(tmp=tmp_path / "s") + EXPORTER.format(url=prom.write_url, message=message)
        exporters += "    send_native_histograms: true\n"
        s = Sightline(tmp_path / "s", exporters=exporters, pipeline_exporters={"metrics": "[prometheusremotewrite]"})
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"http://127.0.0.1:{s.http}/v1/metrics"), export_interval_millis=3_600_000
        )
        provider = MeterProvider(
            resource=Resource.create({"service.name": "checkout"}),
            metric_readers=[reader],
            views=[View(instrument_name="latency", aggregation=ExponentialBucketHistogramAggregation())],
        )
        h = provider.get_meter("e2e").create_histogram("latency", unit="s")
        for v in (0.1, 0.2, 0.2, 0.4, 0.8):
            h.record(v)
        assert provider.force_flush(10_000)
        sel = 'latency_seconds{owner_team="payments", job="checkout"}'
        assert wait_until(lambda: prom.query(f"histogram_count({sel})") != [], 30), (
            (tmp_path / "s" / "stderr.log").read_text() + (tmp_path / "p" / "prometheus.log").read_text()[-3000:]
        )
        assert value(prom.query(f"histogram_count({sel})")) == 5
        assert value(prom.query(f"histogram_sum({sel})")) == pytest.approx(1.7)
        # The median observation is 0.2; the native histogram's bucket around it is narrow.
        assert value(prom.query(f"histogram_quantile(0.5, {sel})")) == pytest.approx(0.2, rel=0.1)
        provider.shutdown()
    finally:
        if s is not None:
            s.stop()
        prom.stop()
