"""Traces end to end into a real Jaeger v2 (built from its Go modules by scripts/test.sh):
Python SDK -> sightline (ownership) -> `otlp` exporter (gRPC) -> Jaeger's OTLP receiver ->
memory storage, read back through Jaeger's query API as Grafana's Jaeger data source reads it.
Ownership must be on the trace's process (the resource) as tags."""

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from peer_jaeger import jaeger  # noqa: F401 (fixture)


def send_trace(sl, service: str, extra: dict | None = None) -> str:
    """Sends one trace of two spans from `service`; returns its trace id in hex."""
    res = Resource.create({"service.name": service, **(extra or {})})
    tp = TracerProvider(resource=res)
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{sl.grpc}", insecure=True)))
    tracer = tp.get_tracer("e2e-jaeger")
    with tracer.start_as_current_span("place-order") as parent:
        with tracer.start_as_current_span("charge-card"):
            pass
        trace_id = format(parent.get_span_context().trace_id, "032x")
    tp.shutdown()
    return trace_id


def otlp_to(jaeger):
    return f"""
  otlp/jaeger:
    endpoint: 127.0.0.1:{jaeger.otlp}
    tls: {{ insecure: true }}
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
"""


def process_tags(trace: dict, service: str) -> dict:
    """The tags of the process that `service`'s spans point at, as a dict."""
    procs = [trace["processes"][s["processID"]] for s in trace["spans"]]
    assert procs and all(p["serviceName"] == service for p in procs), trace["processes"]
    return {t["key"]: t["value"] for t in procs[0]["tags"]}


def test_traces_reach_jaeger_with_ownership(sightline_factory, jaeger):
    sl = sightline_factory(exporters=otlp_to(jaeger), pipeline_exporters="[otlp/jaeger]")
    trace_id = send_trace(sl, "checkout", {"owner.team": "forged", "deployment.environment": "e2e"})

    trace = jaeger.wait_trace(trace_id, spans=2)
    assert trace is not None, f"trace {trace_id} never reached Jaeger; sightline metrics:\n{sl.metrics()}"
    assert trace["traceID"] == trace_id
    assert sorted(s["operationName"] for s in trace["spans"]) == ["charge-card", "place-order"]
    tags = process_tags(trace, "checkout")
    assert tags.get("owner.team") == "payments", tags
    assert tags.get("owner.contact") == "#payments", tags
    assert tags.get("owner.oncall") == "pagerduty:PAY123", tags
    assert tags.get("owner.system") == "storefront", tags
    assert tags.get("owner.source") == "service", tags
    # The client's own attributes stay; its forged owner is replaced, not kept beside.
    assert tags.get("deployment.environment") == "e2e", tags
    assert "forged" not in str(trace["processes"])
    assert "checkout" in (jaeger.get("/api/services")["data"] or [])


def test_rule_and_default_owners_in_jaeger(sightline_factory, jaeger):
    sl = sightline_factory(exporters=otlp_to(jaeger), pipeline_exporters="[otlp/jaeger]")
    by_rule = send_trace(sl, "search-api")
    unowned = send_trace(sl, "nobody-knows")

    trace = jaeger.wait_trace(by_rule, spans=2)
    assert trace is not None, f"trace {by_rule} never reached Jaeger"
    tags = process_tags(trace, "search-api")
    assert tags.get("owner.team") == "search", tags
    assert tags.get("owner.source") == "rule:1", tags

    trace = jaeger.wait_trace(unowned, spans=2)
    assert trace is not None, f"trace {unowned} never reached Jaeger"
    tags = process_tags(trace, "nobody-knows")
    assert tags.get("owner.team") == "unowned", tags
    assert tags.get("owner.source") == "default", tags
    assert sorted(jaeger.get("/api/services")["data"]) == ["nobody-knows", "search-api"]
