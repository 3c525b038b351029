"""Interop with the real OpenTelemetry Collector (built from its Go modules by
scripts/test.sh): the collector's OTLP exporter (Go gRPC client, gzip) sends to sightline, and
sightline's OTLP exporter sends back to the collector's OTLP receiver (Go gRPC server), whose
debug exporter prints what arrived. The Python SDK is the original client."""

import os
import subprocess
import time

import pytest

from conftest import collector, free_port, wait_until
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry._logs import LogRecord
# Sightline's exporter frames and compresses gRPC messages itself (ADR 13): each setting must
# reach the collector's gRPC-Go server intact, and its answer must be read.
COMPRESSIONS = {
    "default-gzip": "",
    "gzip-level-9": "    compression: gzip\n    compression_params: { level: 9 }\n",
    "zstd": "    compression: zstd\n",
    "none": "    compression: none\n",
}


@pytest.mark.parametrize("compression", list(COMPRESSIONS))
def test_collector_to_sightline_to_collector(tmp_path, sightline_factory, compression):
    col_in, col_back, col_metrics = free_port(), free_port(), free_port()
    sl = sightline_factory(
        exporters=f"""
  otlp/collector:
    endpoint: 127.0.0.1:{col_back}
    tls: {{ insecure: true }}
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
{COMPRESSIONS[compression]}""",
        pipeline_exporters="[otlp/collector]",
    )
    components = f"""
receivers:
  otlp/in:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{col_in}" }}
  otlp/back:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{col_back}" }}
exporters:
  otlp/sightline:
    endpoint: "127.0.0.1:{sl.grpc}"
    tls: {{ insecure: true }}
  debug:
    verbosity: detailed"""
    pipelines = {
        "traces/in": "{ receivers: [otlp/in], exporters: [otlp/sightline] }",
        "logs/in": "{ receivers: [otlp/in], exporters: [otlp/sightline] }",
        "traces/back": "{ receivers: [otlp/back], exporters: [debug] }",
        "logs/back": "{ receivers: [otlp/back], exporters: [debug] }",
    }
    with collector(tmp_path, components, pipelines, col_metrics) as log_path:

        res = Resource.create({"service.name": "checkout", "owner.team": "forged"})
        tp = TracerProvider(resource=res)
        tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{col_in}", insecure=True)))
        with tp.get_tracer("interop").start_as_current_span("interop-span"):
            pass
        lp = LoggerProvider(resource=res)
        lp.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"127.0.0.1:{col_in}", insecure=True)))
        lp.get_logger("interop").emit(LogRecord(body="interop-log"))

        def arrived():
            text = log_path.read_text()
            return "interop-span" in text and "interop-log" in text

        assert wait_until(arrived, 30), log_path.read_text()[-4000:]
        text = log_path.read_text()
        assert "owner.team: Str(payments)" in text, text[-4000:]
        assert "owner.team: Str(forged)" not in text
        assert "owner.source: Str(service)" in text
        # The collector logs a record when it receives it, before sightline has its answer
        # and counts the send: wait for the counters rather than read them once.
        sent = 'otelcol_exporter_sent_log_records{exporter="otlp/collector"} 1'
        assert wait_until(lambda: sent in sl.metrics(), 10), sl.metrics()
        m = sl.metrics()
        assert 'otelcol_receiver_accepted_spans{receiver="otlp",transport="grpc"} 1' in m, m
        # Regression (self-metric names): sightline's otelcol_* families are named exactly
        # as the real collector serves them, so collector dashboards work on sightline.
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{col_metrics}/metrics", timeout=5) as r:
            col_text = r.read().decode()
        families = lambda text: {l.split("{")[0].split(" ")[0] for l in text.splitlines() if l.startswith("otelcol_")}
        shared = {"otelcol_receiver_accepted_spans", "otelcol_receiver_refused_spans", "otelcol_exporter_sent_spans"}
        assert shared <= families(col_text), sorted(families(col_text))
        assert shared <= families(m), sorted(families(m))
        tp.shutdown()
        lp.shutdown()


def test_uncompressed_batches_of_large_requests_reach_the_collector_whole(tmp_path, sightline_factory):
    """An uncompressed batch of several large requests is one gRPC message (ADR 13): the
    collector's gRPC-Go server must read each as a whole, every span accounted for."""
    col_back, col_metrics = free_port(), free_port()
    sl = sightline_factory(
        exporters=f"""
  otlp/collector:
    endpoint: 127.0.0.1:{col_back}
    tls: {{ insecure: true }}
    compression: none
    sending_queue: {{ batch: {{ min_size: 3000, flush_timeout: 2s }} }}
""",
        pipeline_exporters="[otlp/collector]",
    )
    components = f"""
receivers:
  otlp/back:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{col_back}" }}
exporters:
  debug: {{ verbosity: basic }}"""
    import urllib.request
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    def collector_spans():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{col_metrics}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return -1
        total = 0
        for line in text.splitlines():
            if line.startswith("otelcol_receiver_accepted_spans") and 'receiver="otlp/back"' in line:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    traces = {"traces/back": "{ receivers: [otlp/back], exporters: [debug] }"}
    with collector(tmp_path, components, traces, col_metrics) as log_path:
        tp = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
        # Requests of 400 spans of about 300 bytes each: 120 KB, well over 16 KiB.
        tp.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"127.0.0.1:{sl.grpc}", insecure=True),
                max_export_batch_size=400,
                max_queue_size=8192,
                schedule_delay_millis=100,
            )
        )
        tracer = tp.get_tracer("interop")
        total = 4000
        for i in range(total):
            with tracer.start_as_current_span(f"large-{i}") as span:
                span.set_attribute("padding", "p" * 200)
        tp.force_flush()
        tp.shutdown()
        assert wait_until(lambda: collector_spans() >= total, 30), (collector_spans(), log_path.read_text()[-3000:])
        assert collector_spans() == total
        m = sl.metrics()
        assert f'otelcol_exporter_sent_spans{{exporter="otlp/collector"}} {total}' in m, m
        assert 'otelcol_exporter_send_failed_spans{exporter="otlp/collector"}' not in m or (
            'otelcol_exporter_send_failed_spans{exporter="otlp/collector"} 0' in m
        ), m
        # Batches merged several large requests, so messages of several chunks were read
        # whole: the debug exporter logs each message's span count.
        import re

        counts = [int(n) for n in re.findall(r'"spans": (\d+)', log_path.read_text())]
        assert sum(counts) == total, counts
        assert max(counts) > 400, counts
