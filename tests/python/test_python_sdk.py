"""The Python OpenTelemetry SDK, a second independent client, sends traces over gRPC and logs
and metrics over HTTP/protobuf; sightline writes them enriched with ownership."""

import json
import logging

from conftest import complete_lines, wait_until
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def resource_attrs(line: str, key: str):
    doc = json.loads(line)
    for top in ("resourceSpans", "resourceLogs", "resourceMetrics"):
        for r in doc.get(top, []):
            attrs = {a["key"]: a["value"].get("stringValue") for a in r["resource"]["attributes"]}
            yield attrs


def read_resources(path):
    out = []
    if not path.exists():
        return out
    for line in complete_lines(path):
        out.extend(resource_attrs(line, "owner.team"))
    return out


def test_traces_over_grpc_are_enriched(sightline):
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout", "owner.team": "forged"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{sightline.grpc}", insecure=True))
    )
    tracer = provider.get_tracer("e2e")
    for i in range(20):
        with tracer.start_as_current_span(f"op-{i}"):
            pass
    assert provider.force_flush(10_000)
    path = sightline.tmp / "traces.jsonl"
    assert wait_until(lambda: len(read_resources(path)) > 0)
    for attrs in read_resources(path):
        assert attrs["service.name"] == "checkout"
        assert attrs["owner.team"] == "payments"
        assert attrs["owner.oncall"] == "pagerduty:PAY123"
        assert attrs["owner.source"] == "service"
    provider.shutdown()
    m = sightline.metrics()
    assert 'otelcol_receiver_accepted_spans{receiver="otlp",transport="grpc"} 20' in m


def test_logs_and_metrics_over_http_are_enriched(sightline):
    res = Resource.create({"service.name": "search-api"})
    lp = LoggerProvider(resource=res)
    lp.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"http://127.0.0.1:{sightline.http}/v1/logs"))
    )
    log = logging.getLogger("e2e")
    log.propagate = False
    log.addHandler(LoggingHandler(logger_provider=lp))
    log.warning("disk almost full")
    assert lp.force_flush(10_000)

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"http://127.0.0.1:{sightline.http}/v1/metrics"), export_interval_millis=60_000
    )
    mp = MeterProvider(resource=res, metric_readers=[reader])
    mp.get_meter("e2e").create_counter("requests").add(5)
    assert mp.force_flush(10_000)

    for name in ("logs.jsonl", "metrics.jsonl"):
        path = sightline.tmp / name
        assert wait_until(lambda: len(read_resources(path)) > 0), name
        for attrs in read_resources(path):
            assert attrs["owner.team"] == "search", attrs
            assert attrs["owner.source"] == "rule:1", attrs
    lp.shutdown()
    mp.shutdown()
