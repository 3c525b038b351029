"""Differential test of the `loadbalancing` exporter against the collector's
`loadbalancingexporter` (contrib v0.161.0, the tests/peers/otelcol161 build): the same static
ring of four real gRPC backends (Python `grpcio` OTLP services on loopback), the same spans,
log records and metrics through each system; every item must reach the same backend, so the
agents and gateways of a mixed fleet agree on where each trace (or service) goes.

Routing keys checked: traces by trace id (the default; also with the Python SDK as the client), traces by service, logs by trace id
(records without one go to a random backend in both systems and are only counted), logs by
service (the logs default), metrics by service, logs and metrics by resource (the collector's
resource identity over attributes of every value type), metric data points by stream (every
metric type; the points of one metric spread over backends)."""

import json
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator

from conftest import free_port, wait_until
from peers import ROOT, peer_binary

RNG = random.Random(11)
BACKENDS = 4


class GrpcBackend:
    """A real OTLP/gRPC server (grpcio) that records which item ids it received."""

    def __init__(self):
        self.lock = threading.Lock()
        self.spans, self.logs, self.metrics = [], [], []
        outer = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                with outer.lock:
                    for rs in request.resource_spans:
                        for ss in rs.scope_spans:
                            outer.spans.extend(s.name for s in ss.spans)
                return trace_service_pb2.ExportTraceServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request, context):
                with outer.lock:
                    for rl in request.resource_logs:
                        for sl in rl.scope_logs:
                            outer.logs.extend(r.body.string_value for r in sl.log_records)
                return logs_service_pb2.ExportLogsServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):
                with outer.lock:
                    for rm in request.resource_metrics:
                        svc = next((a.value.string_value for a in rm.resource.attributes if a.key == "service.name"), "")
                        for sm in rm.scope_metrics:
                            for m in sm.metrics:
                                if m.name.startswith("sid/"):  # streamID: each point on its own
                                    points = getattr(m, m.WhichOneof("data")).data_points
                                    outer.metrics.extend(
                                        f"{m.name}/" + next(a.value.string_value for a in pt.attributes if a.key == "p")
                                        for pt in points)
                                else:
                                    outer.metrics.append(f"{svc}/{m.name}")
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def total(self):
        with self.lock:
            return len(self.spans) + len(self.logs) + len(self.metrics)

    def clear(self):
        with self.lock:
            self.spans, self.logs, self.metrics = [], [], []


def hexid(bits):
    return "%0*x" % (bits // 4, RNG.getrandbits(bits))


SERVICES = [f"svc-{i}" for i in range(12)]


def traces(prefix):
    resources = []
    for svc in SERVICES:
        spans = []
        for t in range(25):
            tid = hexid(128)
            for i in range(2):
                spans.append({"traceId": tid, "spanId": hexid(64), "name": f"{prefix}/{svc}/{t}/{i}", "kind": 1,
                              "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000000001000"})
        resources.append({"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
                          "scopeSpans": [{"scope": {"name": "lib"}, "spans": spans}]})
    return {"resourceSpans": resources}


def logs():
    records = []
    for i in range(300):
        rec = {"timeUnixNano": "1700000000000000000", "body": {"stringValue": f"log-{i}"}}
        if i % 10 != 0:
            rec["traceId"] = hexid(128)
        records.append(rec)
    return {"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "app"}}]},
                              "scopeLogs": [{"scope": {"name": "lib"}, "logRecords": records}]}]}


def logs_by_service():
    resources = []
    for svc in SERVICES:
        records = [{"timeUnixNano": "1700000000000000000", "body": {"stringValue": f"lsvc/{svc}/{i}"},
                    "traceId": hexid(128)} for i in range(5)]
        resources.append({"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
                          "scopeLogs": [{"scope": {"name": "lib"}, "logRecords": records}]})
    return {"resourceLogs": resources}


def metrics():
    resources = []
    for svc in SERVICES:
        points = [{"asDouble": 1.5, "timeUnixNano": "1700000000000000000"}]
        resources.append({"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
                          "scopeMetrics": [{"scope": {"name": "lib"}, "metrics": [
                              {"name": "queue.depth", "gauge": {"dataPoints": points}},
                              {"name": "requests", "gauge": {"dataPoints": points}}]}]})
    return {"resourceMetrics": resources}


def varied_resources(n):
    """Resources whose attributes take every value type, in varied orders (routing_key
    resource hashes them all)."""
    out = []
    for i in range(n):
        attrs = [
            {"key": "service.name", "value": {"stringValue": f"svc-{i % 7}"}},
            {"key": "replica", "value": {"intValue": str(i)}},
            {"key": "canary", "value": {"boolValue": i % 2 == 0}},
            {"key": "weight", "value": {"doubleValue": i / 3}},
            {"key": "blob", "value": {"bytesValue": "AAEC"}},
            {"key": "zones", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": str(i)}]}}},
            {"key": "labels", "value": {"kvlistValue": {"values": [
                {"key": "tier", "value": {"stringValue": "gold" if i % 3 else "silver"}},
                {"key": "empty", "value": {}}]}}},
        ]
        if i % 4 == 0:
            attrs.reverse()
        out.append({"attributes": attrs[: 1 + i % len(attrs)] if i % 5 else attrs} if i else {})
    return out


def logs_by_resource():
    return {"resourceLogs": [
        {"resource": r, "scopeLogs": [{"scope": {"name": "lib"}, "logRecords": [
            {"timeUnixNano": "1700000000000000000", "body": {"stringValue": f"lres/{i}/{j}"}} for j in range(3)]}]}
        for i, r in enumerate(varied_resources(40))]}


def metrics_by_resource():
    points = [{"asDouble": 1.5, "timeUnixNano": "1700000000000000000"}]
    return {"resourceMetrics": [
        {"resource": r, "scopeMetrics": [{"scope": {"name": "lib"}, "metrics": [
            {"name": f"mres/{i}/{j}", "gauge": {"dataPoints": points}} for j in range(2)]}]}
        for i, r in enumerate(varied_resources(40))]}


def metrics_by_stream():
    """Metrics of every type with 12 points each (attribute p, and others on some), two
    resources and scopes with versions and attributes: routing_key streamID sends points of one
    metric to several backends."""
    def pts(kind, name):
        out = []
        for p in range(12):
            attrs = [{"key": "p", "value": {"stringValue": f"{p}"}}]
            if p % 3 == 0:
                attrs.append({"key": "code", "value": {"intValue": str(200 + p)}})
            pt = {"attributes": attrs, "timeUnixNano": "1700000000000000000", "startTimeUnixNano": "1690000000000000000"}
            if kind in ("gauge", "sum"):
                pt["asDouble"] = p / 2
            elif kind == "histogram":
                pt.update(count="2", sum=3.0, bucketCounts=["1", "1"], explicitBounds=[1.0])
            elif kind == "exponentialHistogram":
                pt.update(count="1", scale=2, zeroCount="0", positive={"offset": 1, "bucketCounts": ["1"]})
            else:
                pt.update(count="1", sum=2.0, quantileValues=[{"quantile": 0.5, "value": 2.0}])
            out.append(pt)
        return {"dataPoints": out}

    def metrics_of(r):
        return [
            {"name": f"sid/{r}/gauge", "unit": "1", "gauge": pts("gauge", "g")},
            {"name": f"sid/{r}/mono", "unit": "By", "sum": {**pts("sum", "s"), "aggregationTemporality": 2, "isMonotonic": True}},
            {"name": f"sid/{r}/delta", "sum": {**pts("sum", "d"), "aggregationTemporality": 1}},
            {"name": f"sid/{r}/hist", "unit": "ms", "histogram": {**pts("histogram", "h"), "aggregationTemporality": 2}},
            {"name": f"sid/{r}/exp", "exponentialHistogram": {**pts("exponentialHistogram", "e"), "aggregationTemporality": 1}},
            {"name": f"sid/{r}/summary", "summary": pts("summary", "q")},
        ]
    return {"resourceMetrics": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": f"svc-{r}"}},
                                     {"key": "host.id", "value": {"intValue": str(r)}}]},
         "scopeMetrics": [{"scope": {"name": "lib", "version": f"1.{r}",
                                     "attributes": [{"key": "k", "value": {"boolValue": r == 0}}]},
                           "metrics": metrics_of(r)}]}
        for r in range(2)]}


TRACES_TID, TRACES_SVC, LOGS, METRICS = traces("tid"), traces("svc"), logs(), metrics()
METRICS_SID = metrics_by_stream()
LOGS_SVC, LOGS_RES, METRICS_RES = logs_by_service(), logs_by_resource(), metrics_by_resource()


def config(ports, backends, admin):
    hostnames = [f"127.0.0.1:{b.port}" for b in backends]
    otlp = {"tls": {"insecure": True}, "timeout": "5s"}

    def lb(**kw):
        return {"protocol": {"otlp": otlp}, "resolver": {"static": {"hostnames": hostnames}}, **kw}

    receivers = {f"otlp/{k}": {"protocols": {"http": {"endpoint": f"127.0.0.1:{p}"}}} for k, p in ports.items()}
    return {
        "receivers": receivers,
        "exporters": {
            "loadbalancing/tid": lb(),
            "loadbalancing/svc": lb(routing_key="service"),
            "loadbalancing/logs": lb(routing_key="traceID"),
            "loadbalancing/metrics": lb(routing_key="service"),
            # No routing_key: the logs default (service, as in the collector).
            "loadbalancing/logsvc": lb(),
            "loadbalancing/lres": lb(routing_key="resource"),
            "loadbalancing/mres": lb(routing_key="resource"),
            "loadbalancing/sid": lb(routing_key="streamID"),
        },
        "service": {
            "telemetry": {"metrics": {"readers": [
                {"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": admin}}}}]}},
            "pipelines": {
                "traces/tid": {"receivers": ["otlp/tid"], "exporters": ["loadbalancing/tid"]},
                "traces/svc": {"receivers": ["otlp/svc"], "exporters": ["loadbalancing/svc"]},
                "logs": {"receivers": ["otlp/logs"], "exporters": ["loadbalancing/logs"]},
                "metrics": {"receivers": ["otlp/metrics"], "exporters": ["loadbalancing/metrics"]},
                "logs/svc": {"receivers": ["otlp/logsvc"], "exporters": ["loadbalancing/logsvc"]},
                "logs/res": {"receivers": ["otlp/lres"], "exporters": ["loadbalancing/lres"]},
                "metrics/res": {"receivers": ["otlp/mres"], "exporters": ["loadbalancing/mres"]},
                "metrics/sid": {"receivers": ["otlp/sid"], "exporters": ["loadbalancing/sid"]},
            },
        },
    }


def post(port, signal, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/{signal}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


SDK_TRACES = 60
EXPECTED = sum(len(s["spans"]) for t in (TRACES_TID, TRACES_SVC) for r in t["resourceSpans"]
               for s in r["scopeSpans"]) + 300 + 2 * len(SERVICES) + 5 * len(SERVICES) + 2 * SDK_TRACES \
    + 40 * 3 + 40 * 2 + 2 * 6 * 12


class SeededIds(IdGenerator):
    """The same trace and span ids in both runs."""

    def __init__(self):
        self.rng = random.Random(23)

    def generate_trace_id(self):
        return self.rng.getrandbits(128)

    def generate_span_id(self):
        return self.rng.getrandbits(64)


def send_with_sdk(port):
    """SDK_TRACES traces of a parent and a child span, through the Python SDK over OTLP/HTTP."""
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}), id_generator=SeededIds())
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")))
    tracer = provider.get_tracer("lb")
    for i in range(SDK_TRACES):
        with tracer.start_as_current_span(f"sdk/{i}/parent"):
            with tracer.start_as_current_span(f"sdk/{i}/child"):
                pass
    provider.shutdown()


def run(name, backends, tmp_path):
    binary = {"otelcol": peer_binary("otelcol (contrib v0.161.0)", "OTELCOL161_BIN", ROOT / ".peers/otelcol161"),
              "sightline": peer_binary("sightline", "SIGHTLINE_BIN", ROOT / "target/release/sightline")}[name]
    for b in backends:
        b.clear()
    picked = set()
    while len(picked) < 9:
        picked.add(free_port())
    picked = sorted(picked)
    ports = dict(zip(["tid", "svc", "logs", "metrics", "logsvc", "lres", "mres", "sid"], picked))
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(json.dumps(config(ports, backends, picked[-1]), indent=1))
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "w") as log:
        args = [binary, "--config", str(cfg)] if name == "otelcol" else [binary, "run", "--config", str(cfg)]
        proc = subprocess.Popen(args, stdout=log, stderr=log)
        try:
            def up():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited:\n" + log_path.read_text()[-4000:])
                for p in ports.values():
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{p}/v1/traces", timeout=1)
                    except urllib.error.HTTPError:
                        continue
                    except OSError:
                        return False
                return True
            assert wait_until(up, 60), log_path.read_text()[-3000:]
            assert post(ports["tid"], "traces", TRACES_TID) == 200
            assert post(ports["svc"], "traces", TRACES_SVC) == 200
            assert post(ports["logs"], "logs", LOGS) == 200
            assert post(ports["metrics"], "metrics", METRICS) == 200
            assert post(ports["logsvc"], "logs", LOGS_SVC) == 200
            send_with_sdk(ports["tid"])
            assert post(ports["lres"], "logs", LOGS_RES) == 200
            assert post(ports["mres"], "metrics", METRICS_RES) == 200
            assert post(ports["sid"], "metrics", METRICS_SID) == 200
            assert wait_until(lambda: sum(b.total() for b in backends) >= EXPECTED, 30), (
                f"{name}: {sum(b.total() for b in backends)} of {EXPECTED} items arrived\n"
                + log_path.read_text()[-3000:])
            time.sleep(0.5)  # anything more (a duplicate) would show in the counts below
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    placement = {}
    for i, b in enumerate(backends):
        with b.lock:
            for kind, items in (("span", b.spans), ("log", b.logs), ("metric", b.metrics)):
                for item in items:
                    placement.setdefault((kind, item), []).append(i)
    return placement


@pytest.fixture(scope="module")
def placements(tmp_path_factory):
    backends = [GrpcBackend() for _ in range(BACKENDS)]
    try:
        tmp = tmp_path_factory.mktemp("lb")
        yield {name: run(name, backends, tmp) for name in ("otelcol", "sightline")}
    finally:
        for b in backends:
            b.server.stop(0)


def test_every_item_arrives_once(placements):
    for name, placement in placements.items():
        assert sum(len(v) for v in placement.values()) == EXPECTED, name
        dups = {k: v for k, v in placement.items() if len(v) > 1}
        assert not dups, f"{name} sent items twice: {list(dups)[:5]}"


@pytest.mark.parametrize("prefix", ["tid", "svc"])
def test_spans_reach_the_same_backend(placements, prefix):
    c, s = placements["otelcol"], placements["sightline"]
    keys = [k for k in c if k[0] == "span" and k[1].startswith(prefix + "/")]
    assert len(keys) == 12 * 25 * 2
    differ = [k for k in keys if c[k] != s.get(k)]
    assert not differ, f"{len(differ)} of {len(keys)} spans at another backend, e.g. {differ[:3]}: " + \
        str([(c[k], s.get(k)) for k in differ[:3]])
    # The pool is used: spans spread over every backend.
    assert {c[k][0] for k in keys} == set(range(BACKENDS)) or prefix == "svc"


def test_python_sdk_traces_reach_one_backend_the_same_in_both(placements):
    c, s = placements["otelcol"], placements["sightline"]
    keys = [k for k in c if k[0] == "span" and k[1].startswith("sdk/")]
    assert len(keys) == 2 * SDK_TRACES
    assert all(c[k] == s.get(k) for k in keys), [(k, c[k], s.get(k)) for k in keys if c[k] != s.get(k)][:3]
    for i in range(SDK_TRACES):
        assert s[("span", f"sdk/{i}/parent")] == s[("span", f"sdk/{i}/child")], "a trace split over backends"


def test_logs_with_a_trace_id_reach_the_same_backend(placements):
    c, s = placements["otelcol"], placements["sightline"]
    keys = [("log", f"log-{i}") for i in range(300) if i % 10 != 0]
    differ = [k for k in keys if c.get(k) != s.get(k)]
    assert not differ, f"{len(differ)} of {len(keys)} log records at another backend: {differ[:3]}"
    # Records without a trace id go to some backend in both.
    for i in range(0, 300, 10):
        assert c.get(("log", f"log-{i}")) and s.get(("log", f"log-{i}"))


def test_logs_by_service_reach_the_same_backend(placements):
    c, s = placements["otelcol"], placements["sightline"]
    keys = [k for k in c if k[0] == "log" and k[1].startswith("lsvc/")]
    assert len(keys) == 5 * len(SERVICES)
    differ = [k for k in keys if c[k] != s.get(k)]
    assert not differ, f"{len(differ)} of {len(keys)} log records at another backend: {differ[:3]}"
    # A resource goes whole to one backend.
    for svc in SERVICES:
        assert len({c[("log", f"lsvc/{svc}/{i}")][0] for i in range(5)}) == 1


@pytest.mark.parametrize("kind,prefix,per", [("log", "lres/", 3), ("metric", "/mres/", 2)])
def test_logs_and_metrics_by_resource_reach_the_same_backend(placements, kind, prefix, per):
    c, s = placements["otelcol"], placements["sightline"]
    keys = [k for k in c if k[0] == kind and prefix in k[1]]
    assert len(keys) == 40 * per
    differ = [k for k in keys if c[k] != s.get(k)]
    assert not differ, f"{len(differ)} of {len(keys)} items at another backend: {differ[:3]}"
    assert len({c[k][0] for k in keys}) > 1, "the resources spread over the pool"


def test_metric_points_by_stream_reach_the_same_backend(placements):
    c, s = placements["otelcol"], placements["sightline"]
    keys = [k for k in c if k[0] == "metric" and k[1].startswith("sid/")]
    assert len(keys) == 2 * 6 * 12
    differ = [k for k in keys if c[k] != s.get(k)]
    assert not differ, f"{len(differ)} of {len(keys)} points at another backend: {differ[:3]}"
    # The points of one metric do spread over backends.
    assert len({c[("metric", f"sid/0/gauge/{p}")][0] for p in range(12)}) > 1


def test_metrics_by_service_reach_the_same_backend(placements):
    c, s = placements["otelcol"], placements["sightline"]
    keys = [k for k in c if k[0] == "metric" and "/mres/" not in k[1] and not k[1].startswith("sid/")]
    assert len(keys) == 2 * len(SERVICES)
    differ = [k for k in keys if c[k] != s.get(k)]
    assert not differ, f"{len(differ)} of {len(keys)} metrics at another backend: {differ[:3]}"


def test_validate_names_what_is_refused(tmp_path):
    """`sightline validate`: a routing key the signal cannot use, and a resolver Sightline does
    not have, are errors naming the option."""
    cfg = tmp_path / "lb.yaml"
    cfg.write_text("""
receivers:
  otlp: { protocols: { grpc: { endpoint: "127.0.0.1:0" } } }
exporters:
  loadbalancing:
    routing_key: traceID
    protocol: { otlp: { tls: { insecure: true } } }
    resolver: { static: { hostnames: [gw-0, gw-1] } }
  loadbalancing/k8s:
    protocol: { otlp: { tls: { insecure: true } } }
    resolver: { k8s: { service: gateways.observability } }
service:
  pipelines:
    traces: { receivers: [otlp], exporters: [loadbalancing, loadbalancing/k8s] }
    metrics: { receivers: [otlp], exporters: [loadbalancing] }
""")
    binary = peer_binary("sightline", "SIGHTLINE_BIN", ROOT / "target/release/sightline")
    r = subprocess.run([binary, "validate", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode != 0
    assert 'exporters.loadbalancing.routing_key: unsupported routing_key "traceID" for metrics' in r.stderr, r.stderr
    assert "exporters.loadbalancing/k8s.resolver.k8s: the Kubernetes resolver is not supported" in r.stderr, r.stderr
    assert "pipeline \"traces\"" not in r.stderr, r.stderr
