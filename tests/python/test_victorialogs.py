"""Logs end to end into a real VictoriaLogs (built from its Go modules by scripts/test.sh),
read back with LogsQL as a user would:
- Python SDK -> sightline (ownership) -> `loki` exporter -> VictoriaLogs' Loki push endpoint,
  protobuf+snappy and JSON+gzip: the team is a stream label (`owner_team`), ids and other
  attributes are structured metadata (fields);
- Python SDK -> sightline -> `otlphttp` -> VictoriaLogs' OTLP endpoint, where resource
  attributes arrive as they are (`owner.team`)."""

import logging
import os
import re
import subprocess
import uuid

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from peer_victorialogs import victorialogs  # noqa: F401 (fixture)

OTHER_EXPORTERS = """
  file/traces:
    path: "{tmp}/traces.jsonl"
  file/metrics:
    path: "{tmp}/metrics.jsonl"
"""


def send_logs(sl, service: str, marker: str, extra_resource: dict | None = None, long_line: bool = False) -> dict:
    """Logs from `service` over OTLP/HTTP: one warning inside a span (so it carries trace and
    span ids) with an `order.id` attribute, one error without a span, and optionally one very
    long line. Returns the span's ids in hex."""
    res = Resource.create({"service.name": service, "deployment.environment.name": "prod", **(extra_resource or {})})
    lp = LoggerProvider(resource=res)
    lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"http://127.0.0.1:{sl.http}/v1/logs")))
    log = logging.getLogger(f"e2e-vl-{marker}-{service}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    handler = LoggingHandler(logger_provider=lp)
    log.addHandler(handler)
    tracer = TracerProvider(resource=res).get_tracer("e2e")
    with tracer.start_as_current_span("pay") as span:
        ctx = span.get_span_context()
        log.warning("card declined %s", marker, extra={"order.id": "o-17"})
    log.error("payment gateway down %s", marker)
    if long_line:
        log.info("long %s %s", marker, "x" * 500)
    assert lp.force_flush(10_000)
    log.removeHandler(handler)
    lp.shutdown()
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def metric(text: str, name: str, **labels) -> float:
    """One series' value from Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_loki_exporter_into_victorialogs(sightline_factory, victorialogs, encoding, tmp_path):
    """The `loki` exporter's push lands in VictoriaLogs with the ownership label, the level, the
    ids and attributes as fields, and the line-size limit applied and counted."""
    exporters = f"""
  loki/vl:
    endpoint: http://127.0.0.1:{victorialogs.port}/insert/loki/api/v1/push
    encoding: {encoding}
    max_line_size: 100
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
{OTHER_EXPORTERS.format(tmp=tmp_path)}"""
    sl = sightline_factory(exporters=exporters, pipeline_exporters={"logs": "[loki/vl]"})
    marker = f"m{uuid.uuid4().hex[:12]}"
    ids = send_logs(sl, "checkout", marker, {"owner.team": "forged"}, long_line=True)
    send_logs(sl, "search-api", marker)

    rows = victorialogs.wait_rows(marker, count=5)
    assert len(rows) == 5, f"{rows}\nsightline metrics:\n{sl.metrics()}\n{victorialogs.log_text()}"
    checkout = [r for r in rows if r.get("service_name") == "checkout"]
    search = [r for r in rows if r.get("service_name") == "search-api"]
    assert len(checkout) == 3 and len(search) == 2, rows

    # Ownership from the catalog (the client's forged value replaced) as a stream label.
    for r in checkout:
        assert r["owner_team"] == "payments", r
        assert 'owner_team="payments"' in r["_stream"], r
        assert r["deployment_environment"] == "prod", r
        # The rest of the ownership is structured metadata.
        assert r["owner_contact"] == "#payments", r
    for r in search:
        assert r["owner_team"] == "search", r

    warn = next(r for r in checkout if "card declined" in r["_msg"])
    assert warn["_msg"] == f"card declined {marker}"
    assert warn["level"] == "warn", warn
    assert "level=" in warn["_stream"], warn
    assert warn["trace_id"] == ids["trace_id"], warn
    assert warn["span_id"] == ids["span_id"], warn
    assert warn["order_id"] == "o-17", warn
    err = next(r for r in checkout if "gateway down" in r["_msg"])
    assert err["level"] == "error", err
    assert "trace_id" not in err, err

    # The long line was cut to max_line_size and counted.
    long = next(r for r in checkout if r["_msg"].startswith("long "))
    assert len(long["_msg"]) == 100, long
    text = sl.metrics()
    assert metric(text, "sightline_exporter_limited_log_records_total", exporter="loki/vl", reason="line_size") == 1, text
    assert metric(text, "otelcol_exporter_sent_log_records", exporter="loki/vl") >= 5, text
    assert metric(text, "otelcol_exporter_send_failed_log_records", exporter="loki/vl") == 0, text


def test_otlphttp_logs_into_victorialogs(sightline_factory, victorialogs, tmp_path):
    """The same logs through `otlphttp` into VictoriaLogs' OTLP endpoint: resource attributes
    (ownership included) and ids arrive as fields with their OTLP names."""
    exporters = f"""
  otlphttp/vl:
    endpoint: http://127.0.0.1:{victorialogs.port}/insert/opentelemetry
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
{OTHER_EXPORTERS.format(tmp=tmp_path)}"""
    sl = sightline_factory(exporters=exporters, pipeline_exporters={"logs": "[otlphttp/vl]"})
    marker = f"m{uuid.uuid4().hex[:12]}"
    ids = send_logs(sl, "checkout", marker, {"owner.team": "forged"})

    rows = victorialogs.wait_rows(marker, count=2)
    assert len(rows) == 2, f"{rows}\nsightline metrics:\n{sl.metrics()}\n{victorialogs.log_text()}"
    for r in rows:
        assert r["service.name"] == "checkout", r
        assert r["owner.team"] == "payments", r
        assert r["owner.contact"] == "#payments", r
    warn = next(r for r in rows if "card declined" in r["_msg"])
    assert warn["trace_id"] == ids["trace_id"], warn
    assert warn["order.id"] == "o-17", warn


def test_loki_exporter_in_a_traces_pipeline_is_a_config_error(tmp_path):
    """The exporter is logs-only: `sightline validate` names the exporter and the pipeline."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        """
receivers:
  otlp: { protocols: { http: { endpoint: "127.0.0.1:0" } } }
exporters:
  loki: { endpoint: "http://127.0.0.1:1/loki/api/v1/push" }
service:
  pipelines:
    traces: { receivers: [otlp], exporters: [loki] }
"""
    )
    out = subprocess.run(
        [os.environ["SIGHTLINE_BIN"], "validate", "--config", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode != 0
    assert re.search(r"service\.pipelines\.traces\.exporters: exporter \"loki\" supports logs", out.stderr), out.stderr
