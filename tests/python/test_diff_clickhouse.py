"""Differential test of the clickhouse exporter: the same OTLP requests (every attribute value
type, spans with events, links and states, logs with bodies of every kind, the five metric
types with exemplars) go through the real collector's clickhouseexporter (contrib v0.165.1,
clickhouse-go over HTTP) and through Sightline's, each into its own database of one ClickHouse
engine (chDB behind peer_chdb.py's HTTP endpoint; no ClickHouse server runs here). Every table
is then read back from both databases and compared row by row, column by column. The only
column Sightline adds, `OwnerTeam`, is left out of the comparison (it has its own tests)."""

import base64
import json
import subprocess
import time
import urllib.request

import pytest
from conftest import free_port, wait_until
from peer_chdb import ClickHouse
from peers import ROOT, peer_binary

T0 = 1_780_000_000_000_000_000


def kv(key, value):
    return {"key": key, "value": value}


ATTRS = [
    kv("str", {"stringValue": "v"}),
    kv("int", {"intValue": "-42"}),
    kv("double", {"doubleValue": 0.1}),
    kv("big.double", {"doubleValue": 1e21}),
    kv("bool", {"boolValue": True}),
    kv("bytes", {"bytesValue": base64.b64encode(b"\x00\x01\xff").decode()}),
    kv("list", {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "1"}, {"doubleValue": 2.5}]}}),
    kv("map", {"kvlistValue": {"values": [kv("z", {"stringValue": "<&>"}), kv("a", {"boolValue": False})]}}),
    kv("empty", {}),
]


def resource(service):
    return {"attributes": [kv("service.name", {"stringValue": service}), kv("owner.team", {"stringValue": "payments"}),
                           kv("host.name", {"stringValue": "node-1"})]}


def scope():
    return {"name": "lib", "version": "1.2.3", "attributes": [kv("scope.attr", {"stringValue": "s"})], "droppedAttributesCount": 2}


def traces():
    spans = []
    for i in range(6):
        span = {
            "traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": f"op-{i}", "kind": i % 6,
            "startTimeUnixNano": str(T0 + i * 1000), "endTimeUnixNano": str(T0 + i * 1000 + 12345),
            "attributes": ATTRS if i % 2 == 0 else [kv("i", {"intValue": str(i)})],
            "status": [{}, {"code": 1}, {"code": 2, "message": "boom"}][i % 3],
        }
        if i % 2:
            span["parentSpanId"] = f"{i:016x}"
            span["traceState"] = "k=v"
        if i % 3 == 0:
            span["events"] = [{"timeUnixNano": str(T0 + 5), "name": "e1", "attributes": ATTRS[:3]},
                              {"timeUnixNano": str(T0 + 6), "name": "e2"}]
            span["links"] = [{"traceId": f"{99:032x}", "spanId": f"{98:016x}", "traceState": "a=b",
                              "attributes": [kv("link.attr", {"intValue": "7"})]}]
        spans.append(span)
    return {"resourceSpans": [{"resource": resource("checkout"), "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                               "scopeSpans": [{"scope": scope(), "spans": spans}]}]}


def logs():
    bodies = [{"stringValue": "hello"}, {"intValue": "5"}, {"kvlistValue": {"values": [kv("b", {"intValue": "1"})]}},
              {"arrayValue": {"values": [{"stringValue": "x"}]}}, {"doubleValue": 3.5}, None]
    records = []
    for i, body in enumerate(bodies):
        rec = {"observedTimeUnixNano": str(T0 + 100 + i), "severityNumber": 9 + i, "severityText": ["INFO", "", "WARN"][i % 3],
               "attributes": ATTRS if i % 2 else [], "flags": i % 2}
        if i % 2 == 0:
            rec["timeUnixNano"] = str(T0 + i)
        if body is not None:
            rec["body"] = body
        if i % 3 == 0:
            rec["traceId"], rec["spanId"] = f"{i + 5:032x}", f"{i + 5:016x}"
        if i == 1:
            rec["eventName"] = "app.event"
        records.append(rec)
    return {"resourceLogs": [{"resource": resource("checkout"), "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                              "scopeLogs": [{"scope": scope(), "schemaUrl": "https://scope/1", "logRecords": records}]}]}


def exemplar(i):
    return {"filteredAttributes": [kv("ex", {"stringValue": "1"})], "timeUnixNano": str(T0 + i), "asDouble": 1.5 * i,
            "spanId": f"{i + 1:016x}", "traceId": f"{i + 1:032x}"}


def metrics():
    pt = {"attributes": [kv("route", {"stringValue": "/a"})], "startTimeUnixNano": str(T0), "timeUnixNano": str(T0 + 10)}
    ms = [
        {"name": "g.int", "unit": "1", "description": "int gauge", "gauge": {"dataPoints": [{**pt, "asInt": "7", "exemplars": [exemplar(1)]}]}},
        {"name": "g.double", "gauge": {"dataPoints": [{**pt, "asDouble": 0.25, "flags": 1}]}},
        {"name": "s.mono", "sum": {"aggregationTemporality": 2, "isMonotonic": True, "dataPoints": [{**pt, "asInt": "100"}]}},
        {"name": "s.delta", "sum": {"aggregationTemporality": 1, "dataPoints": [{**pt, "asDouble": -1.5}]}},
        {"name": "h", "unit": "ms", "histogram": {"aggregationTemporality": 2, "dataPoints": [
            {**pt, "count": "6", "sum": 21.5, "bucketCounts": ["1", "2", "3"], "explicitBounds": [1.0, 5.0],
             "min": 0.5, "max": 9.0, "exemplars": [exemplar(2), exemplar(3)]}]}},
        {"name": "eh", "exponentialHistogram": {"aggregationTemporality": 1, "dataPoints": [
            {**pt, "count": "10", "sum": 55.0, "scale": 2, "zeroCount": "1", "positive": {"offset": -2, "bucketCounts": ["1", "4"]},
             "negative": {"offset": 3, "bucketCounts": ["2"]}, "min": -3.0, "max": 20.0}]}},
        {"name": "sm", "summary": {"dataPoints": [
            {**pt, "count": "4", "sum": 10.0, "quantileValues": [{"quantile": 0.5, "value": 2.0}, {"quantile": 0.99, "value": 4.0}]}]}},
    ]
    return {"resourceMetrics": [{"resource": resource("checkout"), "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                                 "scopeMetrics": [{"scope": scope(), "schemaUrl": "https://scope/1", "metrics": ms}]}]}


CORPUS = {"traces": traces, "logs": logs, "metrics": metrics}


def config(name, http_port, admin, ch, database):
    extra = "    sending_queue: { batch: { flush_timeout: 50ms } }\n" if name == "sightline" else ""
    telemetry = (f'    metrics: {{ address: "127.0.0.1:{admin}" }}' if name == "sightline" else
                 f"    metrics:\n      readers: [{{ pull: {{ exporter: {{ prometheus: {{ host: 127.0.0.1, port: {admin} }} }} }} }}]")
    return f"""
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{http_port}" }}
exporters:
  clickhouse:
    endpoint: {ch.url}
    database: {database}
{extra}service:
  telemetry:
{telemetry}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [clickhouse] }}
    logs: {{ receivers: [otlp], exporters: [clickhouse] }}
    metrics: {{ receivers: [otlp], exporters: [clickhouse] }}
"""


def post(port, signal, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/{signal}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


TABLES = {
    "otel_traces": "SpanId",
    "otel_logs": "Timestamp, SeverityNumber",
    "otel_metrics_gauge": "MetricName",
    "otel_metrics_sum": "MetricName",
    "otel_metrics_histogram": "MetricName",
    "otel_metrics_exponential_histogram": "MetricName",
    "otel_metrics_summary": "MetricName",
}


def run(name, tmp_path, ch, database):
    binary = {"otelcol": peer_binary("otelcol", "OTELCOL_BIN", ROOT / ".peers/otelcol"),
              "sightline": peer_binary("sightline", "SIGHTLINE_BIN", ROOT / "target/release/sightline")}[name]
    port, admin = free_port(), free_port()
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(config(name, port, admin, ch, database))
    log = open(tmp_path / f"{name}.log", "w")
    args = [binary, "--config", str(cfg)] if name == "otelcol" else [binary, "run", "--config", str(cfg)]
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    try:
        def up():
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/traces", timeout=1)
            except urllib.error.HTTPError:
                return True
            except OSError:
                return False
            return True

        assert wait_until(up, 30) and proc.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
        for signal, make in CORPUS.items():
            post(port, signal, make())
        want = {"otel_traces": 6, "otel_logs": 6, "otel_metrics_gauge": 2, "otel_metrics_sum": 2,
                "otel_metrics_histogram": 1, "otel_metrics_exponential_histogram": 1, "otel_metrics_summary": 1}
        for table, n in want.items():
            assert wait_until(lambda: ch.count(f"{database}.{table}") == n, 30), (
                name, table, ch.count(f"{database}.{table}"), (tmp_path / f"{name}.log").read_text()[-3000:])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def read(ch, database, table, order):
    rows = ch.rows(f"SELECT * EXCEPT (OwnerTeam) FROM {database}.{table} ORDER BY {order}" if database == "diff_s"
                   else f"SELECT * FROM {database}.{table} ORDER BY {order}")
    return rows


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diff-clickhouse")
    ch = ClickHouse(tmp / "chdb")
    try:
        run("otelcol", tmp, ch, "diff_c")
        run("sightline", tmp, ch, "diff_s")
        yield ch
    finally:
        ch.stop()


@pytest.mark.parametrize("table", list(TABLES))
def test_sightline_writes_the_rows_the_collector_writes(both, table):
    ch = both
    collector = read(ch, "diff_c", table, TABLES[table])
    sightline = read(ch, "diff_s", table, TABLES[table])
    assert len(collector) == len(sightline) > 0
    assert list(collector[0]) == list(sightline[0]), "the same columns, in the same order"
    for c, s in zip(collector, sightline):
        for col in c:
            assert s[col] == c[col], f"{table}.{col}: collector {c[col]!r}, Sightline {s[col]!r}"


def test_the_schemas_match_but_for_the_ownership_column(both):
    ch = both
    for table in TABLES:
        c = ch.rows(f"DESCRIBE TABLE diff_c.{table}")
        s = [r for r in ch.rows(f"DESCRIBE TABLE diff_s.{table}") if r["name"] != "OwnerTeam"]
        assert [(r["name"], r["type"], r["default_type"], r["default_expression"], r["codec_expression"]) for r in c] == [
            (r["name"], r["type"], r["default_type"], r["default_expression"], r["codec_expression"]) for r in s
        ], table
