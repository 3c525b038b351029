"""The `policy` processor's redaction end to end with the Python SDK as the client: card
numbers (valid and Luhn-invalid), e-mails, JWTs, AWS access keys and a blocked key in span
attributes, span events, span names, log bodies (string and map) and metric point attributes.
One team (payments) enforces, another (search) observes, in the same run: the file exporter's
output has every valid secret of payments masked and every look-alike untouched, search's data
is unchanged, and the findings are counted once each, per team and action."""

import base64
import json
import os
import subprocess
import urllib.request

from conftest import CATALOG, complete_lines, free_port, wait_until
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

CARD = "4111 1111 1111 1111"
BAD_CARD = "4111 1111 1111 1112"  # fails Luhn
ORDER = "order 1234567812345670"  # passes Luhn, no issuer starts with 1
MAIL = "alice@example.com"
AWS = "AKIAIOSFODNN7EXAMPLE"
NOT_AWS = "AKIAIOSFODNN0EXAMPLE"  # 0 is not in the key alphabet


def b64(s):
    return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")


JWT = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}))}.{b64(json.dumps({'sub': '42'}))}.c2lnbmF0dXJlLWJ5dGVz"
NOT_JWT = f"{b64(json.dumps({'typ': 'JWT'}))}.{b64('not json')}.c2ln"


def stars(s):
    return "*" * len(s)


class Run:
    def __init__(self, tmp, policy_extra=""):
        self.tmp = tmp
        self.grpc, self.http, self.admin = free_port(), free_port(), free_port()
        (tmp / "catalog").mkdir()
        (tmp / "catalog" / "teams.yaml").write_text(CATALOG)
        files = "".join(f"""
  file/{s}:
    path: "{tmp}/{s}.jsonl"
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}""" for s in ("traces", "logs", "metrics"))
        pipelines = "".join(f"""
    {s}: {{ receivers: [otlp], processors: [ownership, policy], exporters: [file/{s}] }}"""
                            for s in ("traces", "logs", "metrics"))
        cfg = tmp / "sightline.yaml"
        cfg.write_text(f"""
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{self.grpc}" }}
      http: {{ endpoint: "127.0.0.1:{self.http}" }}
processors:
  ownership:
    catalog: ["{tmp}/catalog"]
  policy:
    mode: observe
    teams:
      payments: {{ mode: enforce }}
{policy_extra}exporters:{files}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{self.admin}" }} }}
  pipelines:{pipelines}
""")
        self.log = open(tmp / "stderr.log", "w")
        self.proc = subprocess.Popen([os.environ["SIGHTLINE_BIN"], "run", "--config", str(cfg)], stderr=self.log)
        assert wait_until(lambda: self.ready() or self.proc.poll() is not None, 30)
        assert self.ready(), (tmp / "stderr.log").read_text()

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def send(run, service):
    res = Resource.create({"service.name": service})
    tp = TracerProvider(resource=res)
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{run.grpc}", insecure=True)))
    with tp.get_tracer("policy-e2e").start_as_current_span(f"charge {CARD}") as span:
        span.set_attribute("payment.card", f"card {CARD} ok")
        span.set_attribute("lookalike.luhn", BAD_CARD)
        span.set_attribute("lookalike.order", ORDER)
        span.set_attribute("user.email", MAIL)
        span.set_attribute("auth.jwt", JWT)
        span.set_attribute("lookalike.jwt", NOT_JWT)
        span.set_attribute("aws.key", AWS)
        span.set_attribute("lookalike.aws", NOT_AWS)
        span.set_attribute("password", "hunter2")
        span.add_event("notify", {"to": f"mail to {MAIL}"})
    assert tp.force_flush(10_000)
    tp.shutdown()

    lp = LoggerProvider(resource=res)
    lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"http://127.0.0.1:{run.http}/v1/logs")))
    logger = lp.get_logger("policy-e2e")
    logger.emit(body=f"paid with {CARD}, not {BAD_CARD}")
    logger.emit(body={"msg": f"key {AWS}", "user": {"mail": MAIL, "note": "nothing here"}, "tags": [JWT, "plain"]})
    assert lp.force_flush(10_000)
    lp.shutdown()

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"http://127.0.0.1:{run.http}/v1/metrics"), export_interval_millis=60_000)
    mp = MeterProvider(resource=res, metric_readers=[reader])
    mp.get_meter("policy-e2e").create_counter("logins").add(1, {"user": MAIL, "plan": "pro"})
    assert mp.force_flush(10_000)
    mp.shutdown()


def by_service(path):
    """{service.name: [resource-level document]} from a file exporter's JSON lines."""
    out = {}
    if not path.exists():
        return out
    for line in complete_lines(path):
        doc = json.loads(line)
        for top in ("resourceSpans", "resourceLogs", "resourceMetrics"):
            for r in doc.get(top, []):
                attrs = {a["key"]: a["value"].get("stringValue") for a in r["resource"]["attributes"]}
                out.setdefault(attrs.get("service.name"), []).append(r)
    return out


def attrs(kvs):
    return {a["key"]: plain(a["value"]) for a in kvs}


def plain(v):
    if "stringValue" in v:
        return v["stringValue"]
    if "kvlistValue" in v:
        return attrs(v["kvlistValue"].get("values", []))
    if "arrayValue" in v:
        return [plain(x) for x in v["arrayValue"].get("values", [])]
    return next(iter(v.values()), None)


def findings(exposition):
    """[(labels, value)] of sightline_policy_findings_total."""
    out = []
    for line in exposition.splitlines():
        if line.startswith("sightline_policy_findings_total{"):
            labels, value = line[len("sightline_policy_findings_total{"):].rsplit("} ", 1)
            kv = dict(part.split("=", 1) for part in labels.split(","))
            out.append(({k: v.strip('"') for k, v in kv.items()}, int(value)))
    return out


def test_redaction_enforced_for_one_team_observed_for_another(tmp_path):
    run = Run(tmp_path)
    try:
        send(run, "checkout")   # payments: enforce
        send(run, "search-api")  # search: observe
        files = {s: tmp_path / f"{s}.jsonl" for s in ("traces", "logs", "metrics")}
        assert wait_until(lambda: all(len(by_service(p)) == 2 for p in files.values()), 20)

        spans = {svc: rs[0]["scopeSpans"][0]["spans"][0] for svc, rs in by_service(files["traces"]).items()}
        pay, search = spans["checkout"], spans["search-api"]
        a = attrs(pay["attributes"])
        assert pay["name"] == f"charge {stars(CARD)}"
        assert a["payment.card"] == f"card {stars(CARD)} ok"
        assert a["user.email"] == stars(MAIL)
        assert a["auth.jwt"] == stars(JWT)
        assert a["aws.key"] == stars(AWS)
        assert a["password"] == stars("hunter2")
        assert (a["lookalike.luhn"], a["lookalike.order"], a["lookalike.jwt"], a["lookalike.aws"]) == (
            BAD_CARD, ORDER, NOT_JWT, NOT_AWS), "look-alikes are left alone"
        assert attrs(pay["events"][0]["attributes"])["to"] == f"mail to {stars(MAIL)}"
        s = attrs(search["attributes"])
        assert search["name"] == f"charge {CARD}" and s["payment.card"] == f"card {CARD} ok"
        assert s["password"] == "hunter2" and s["aws.key"] == AWS, "observe changes nothing"

        logs = {svc: [r["body"] for r in rl[0]["scopeLogs"][0]["logRecords"]]
                for svc, rl in by_service(files["logs"]).items()}
        text, structured = [plain(b) for b in logs["checkout"]]
        assert text == f"paid with {stars(CARD)}, not {BAD_CARD}"
        assert structured == {"msg": f"key {stars(AWS)}", "user": {"mail": stars(MAIL), "note": "nothing here"},
                              "tags": [stars(JWT), "plain"]}
        assert plain(logs["search-api"][0]) == f"paid with {CARD}, not {BAD_CARD}"

        points = {svc: rm[0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0]
                  for svc, rm in by_service(files["metrics"]).items()}
        assert attrs(points["checkout"]["attributes"]) == {"user": stars(MAIL), "plan": "pro"}
        assert attrs(points["search-api"]["attributes"])["user"] == MAIL

        # Each finding counted once, per team, signal and action; never the value itself. The
        # SDK's meter provider exports its cumulative point again on shutdown: one finding per
        # exported point.
        def exported():
            return {svc: sum(len(m["sum"]["dataPoints"]) for r in rm for sm in r["scopeMetrics"]
                             for m in sm["metrics"]) for svc, rm in by_service(files["metrics"]).items()}

        def metric_findings(team):
            return sum(v for k, v in findings(run.metrics()) if k["team"] == team and k["signal"] == "metrics")

        # The point exported on shutdown may be counted by the policy before the file exporter
        # has written it: wait until the file holds every point the policy saw.
        assert wait_until(lambda: exported().get("checkout") == metric_findings("payments")
                          and exported().get("search-api") == metric_findings("search"), 10)
        exported_points = exported()
        m = run.metrics()
        found = findings(m)
        for team, action, svc in (("payments", "masked", "checkout"), ("search", "observed", "search-api")):
            want = {
                ("traces", "credit_card"): 2, ("traces", "email"): 2, ("traces", "jwt"): 1,
                ("traces", "aws_access_key"): 1, ("traces", "blocked_key"): 1,
                ("logs", "credit_card"): 1, ("logs", "email"): 1, ("logs", "jwt"): 1, ("logs", "aws_access_key"): 1,
                ("metrics", "email"): exported_points[svc],
            }
            got = {(k["signal"], k["rule"]): v for k, v in found if k["team"] == team and k["action"] == action}
            assert got == want, (team, got)
        assert {k["action"] for k, _ in found} == {"masked", "observed"}
        assert CARD.replace(" ", "") not in m and MAIL not in m
    finally:
        run.stop()


def validate(tmp, processors_yaml, order):
    (tmp / "catalog").mkdir(exist_ok=True)
    (tmp / "catalog" / "teams.yaml").write_text(CATALOG)
    cfg = tmp / "v.yaml"
    cfg.write_text(f"""
receivers: {{ otlp: {{ protocols: {{ http: {{ endpoint: "127.0.0.1:0" }} }} }} }}
processors:
  ownership: {{ catalog: ["{tmp}/catalog"] }}
{processors_yaml}
exporters: {{ debug: {{}} }}
service:
  pipelines:
    traces: {{ receivers: [otlp], processors: {order}, exporters: [debug] }}
""")
    return subprocess.run([os.environ["SIGHTLINE_BIN"], "validate", "--config", str(cfg)], capture_output=True, text=True)


def test_validate_refuses_policy_before_ownership_and_bad_team_overrides(tmp_path):
    ok = validate(tmp_path, "  policy: {}", "[ownership, policy]")
    assert ok.returncode == 0, ok.stderr
    before = validate(tmp_path, "  policy: {}", "[policy, ownership]")
    assert before.returncode != 0
    assert "list an ownership processor before it" in before.stderr, before.stderr
    window = validate(tmp_path, "  policy: { teams: { payments: { cardinality: { window: 1m } } } }",
                      "[ownership, policy]")
    assert window.returncode != 0
    assert "processors.policy.teams.payments.cardinality.window" in window.stderr, window.stderr
    typo = validate(tmp_path, "  policy: { teams: { payments: { moode: enforce } } }", "[ownership, policy]")
    assert typo.returncode != 0 and "processors.policy.teams.payments" in typo.stderr and "moode" in typo.stderr, typo.stderr
    bad = validate(tmp_path, "  policy: { redaction: { detectors: [ssn] } }", "[ownership, policy]")
    assert "processors.policy.redaction.detectors.0" in bad.stderr and "unknown detector" in bad.stderr, bad.stderr


def test_attribute_limits_with_the_sdk_semantics(tmp_path):
    run = Run(tmp_path, "    attribute_limits: { max_count: 3, max_value_length: 8 }\n")
    try:
        for service in ("checkout", "search-api"):
            tp = TracerProvider(resource=Resource.create({"service.name": service}))
            tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{run.grpc}", insecure=True)))
            with tp.get_tracer("limits").start_as_current_span("op") as span:
                span.set_attribute("a.long", "0123456789abcdef")
                span.set_attribute("b.tags", ["short", "much-too-long"])
                span.set_attribute("c.n", 1234567890123)
                span.set_attribute("d.extra", "x")
                span.set_attribute("e.extra", "y")
            assert tp.force_flush(10_000)
            tp.shutdown()
        path = tmp_path / "traces.jsonl"
        assert wait_until(lambda: len(by_service(path)) == 2, 20)
        spans = {svc: rs[0]["scopeSpans"][0]["spans"][0] for svc, rs in by_service(path).items()}
        pay = spans["checkout"]
        assert attrs(pay["attributes"]) == {"a.long": "01234567", "b.tags": ["short", "much-too"], "c.n": "1234567890123"}
        assert pay.get("droppedAttributesCount") == 2
        assert len(spans["search-api"]["attributes"]) == 5, "observe changes nothing"
        found = findings(run.metrics())
        got = {(k["team"], k["rule"], k["action"]): v for k, v in found if k["signal"] == "traces"}
        assert got == {("payments", "attribute_count", "dropped"): 2, ("payments", "attribute_value_length", "truncated"): 2,
                       ("search", "attribute_count", "observed"): 2, ("search", "attribute_value_length", "observed"): 2}, got
    finally:
        run.stop()


def test_required_attributes_refuse_as_a_partial_success(tmp_path):
    run = Run(tmp_path, "    redaction: { enabled: false }\n"
                        "    required_resource_attributes: [deployment.environment.name]\n")
    try:
        def resource(service, spans):
            return {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                    "scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": f"eee19b7ec3c1b17{i}",
                                               "name": "op", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
                                              for i in range(spans)]}]}
        body = {"resourceSpans": [resource("checkout", 3), resource("search-api", 2)]}
        req = urllib.request.Request(f"http://127.0.0.1:{run.http}/v1/traces", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
            answer = json.loads(r.read())
        partial = answer["partialSuccess"]
        assert int(partial["rejectedSpans"]) == 3, answer
        assert "deployment.environment.name" in partial["errorMessage"] and "payments" in partial["errorMessage"], answer
        path = tmp_path / "traces.jsonl"
        assert wait_until(lambda: "search-api" in by_service(path), 20)
        assert set(by_service(path)) == {"search-api"}, "the refused team's spans are not exported"
        m = run.metrics()
        assert 'otelcol_receiver_refused_spans{receiver="otlp",transport="http"} 3' in m
        assert 'otelcol_receiver_accepted_spans{receiver="otlp",transport="http"} 2' in m
        got = {(k["team"], k["action"]): v for k, v in findings(m) if k["rule"] == "required_attribute"}
        assert got == {("payments", "refused"): 1, ("search", "observed"): 1}, got
    finally:
        run.stop()


def series_gauges(exposition):
    """{(team, metric): value} of sightline_policy_series."""
    out = {}
    for line in exposition.splitlines():
        if line.startswith("sightline_policy_series{"):
            labels, value = line[len("sightline_policy_series{"):].rsplit("} ", 1)
            kv = {k: v.strip('"') for k, v in (part.split("=", 1) for part in labels.split(","))}
            out[(kv["team"], kv["metric"])] = int(value)
    return out


def test_series_limit_per_team_with_the_python_sdk(tmp_path):
    """5,000 distinct series of one counter from a payments service (enforce, limit 1,000): 1,000
    pass, 4,000 are refused and counted, the sender is told which metric and team; a search
    service (observe) sends 1,500 and all of them pass, the 500 over counted as observed."""
    run = Run(tmp_path, "    redaction: { enabled: false }\n"
                        "    cardinality: { max_series_per_metric: 1000, window: 1h }\n")
    try:
        for service, users in (("checkout", 5000), ("search-api", 1500)):
            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=f"http://127.0.0.1:{run.http}/v1/metrics"), export_interval_millis=600_000)
            # The SDK's own cardinality limit (2,000 by default) raised so that Sightline's is the one tested.
            mp = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader],
                               views=[View(instrument_name="logins", aggregation_cardinality_limit=10_000)])
            counter = mp.get_meter("series").create_counter("logins")
            for u in range(users):
                counter.add(1, {"user.id": f"u{u}", "plan": "pro"})
            assert mp.force_flush(20_000)
            mp.shutdown()
        path = tmp_path / "metrics.jsonl"

        def points():
            out = {}
            for svc, rms in by_service(path).items():
                ids = set()
                for r in rms:
                    for sm in r["scopeMetrics"]:
                        for m in sm["metrics"]:
                            if m["name"] == "logins":
                                ids |= {attrs(p["attributes"])["user.id"] for p in m["sum"]["dataPoints"]}
                out[svc] = ids
            return out

        assert wait_until(lambda: len(points().get("search-api", ())) == 1500, 30), {k: len(v) for k, v in points().items()}
        got = points()
        assert len(got["checkout"]) == 1000, len(got["checkout"])
        m = run.metrics()
        f = {(k["team"], k["action"]): v for k, v in findings(m) if k["rule"] == "series_limit"}
        # The SDK exports its cumulative points twice (flush, then shutdown): the same 4,000
        # series are over the limit each time.
        assert f[("payments", "dropped")] % 4000 == 0 and f[("payments", "dropped")] > 0, f
        assert f[("search", "observed")] % 500 == 0 and f[("search", "observed")] > 0, f
        assert ("payments", "observed") not in f and ("search", "dropped") not in f, f
        refused = int(next(line.rsplit(" ", 1)[1] for line in m.splitlines()
                           if line.startswith('otelcol_receiver_refused_metric_points{receiver="otlp",transport="http"}')))
        assert refused == f[("payments", "dropped")], (refused, f)
        # The top offenders: payments' logins at about 5,000 distinct series (estimated past the
        # limit: within 4 standard errors), and the attribute key that makes them.
        assert wait_until(lambda: ("payments", "logins") in series_gauges(run.metrics()), 10)
        g = series_gauges(run.metrics())
        assert 3500 <= g[("payments", "logins")] <= 6500, g
        top = [line for line in run.metrics().splitlines()
               if line.startswith("sightline_policy_series_top_attribute_values{") and 'team="payments"' in line]
        assert len(top) == 1 and 'attribute="user.id"' in top[0], top
    finally:
        run.stop()
