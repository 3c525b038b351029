"""The clickhouse exporter against ClickHouse's engine: chDB behind the loopback HTTP endpoint
of peer_chdb.py (no ClickHouse server can be installed here; see there). Sightline creates
the collector's schema, the Python SDK sends all three signals, and the tables are read with
the queries of Grafana's ClickHouse datasource (trace by id through `otel_traces_trace_id_ts`,
logs by service) and a per-team query on `OwnerTeam`. Every row is compared field by field
with what Sightline received, as its file exporter wrote it in the same pipeline."""

import json
import logging
import re
import time
from pathlib import Path

import pytest
from conftest import DEFAULT_EXPORTERS, complete_lines, wait_until
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from peer_chdb import ClickHouse


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory):
    ch = ClickHouse(tmp_path_factory.mktemp("chdb"))
    yield ch
    ch.stop()


def exporter(ch: ClickHouse, database: str, extra: str = "") -> str:
    return f"""
  clickhouse:
    endpoint: {ch.url}
    database: {database}
    ttl: 72h
    sending_queue: {{ batch: {{ flush_timeout: 100ms }} }}
{extra}"""


def any_text(v: dict) -> str:
    """pdata's AsString of an OTLP/JSON AnyValue (the cases the SDK sends)."""
    if not v:
        return ""
    (k, x), = v.items()
    if k == "stringValue":
        return x
    if k == "intValue":
        return str(int(x))
    if k == "boolValue":
        return "true" if x else "false"
    if k == "doubleValue":
        f = float(x)
        return str(int(f)) if f.is_integer() and abs(f) < 1e21 else repr(f)
    if k == "arrayValue":
        return json.dumps([json.loads(any_json(e)) for e in x.get("values", [])], separators=(",", ":"))
    raise AssertionError(f"value kind {k} not covered by this test")


def any_json(v: dict) -> str:
    (k, x), = v.items()
    if k == "stringValue":
        return json.dumps(x)
    return any_text(v)


def attrs(kvs) -> dict:
    return {a["key"]: any_text(a.get("value", {})) for a in kvs or []}


def file_items(path, signal):
    """(resource, scope, item) of every item the file exporter wrote."""
    keys = {"traces": ("resourceSpans", "scopeSpans", "spans"), "logs": ("resourceLogs", "scopeLogs", "logRecords"),
            "metrics": ("resourceMetrics", "scopeMetrics", "metrics")}[signal]
    out = []
    if not path.exists():
        return out
    for line in complete_lines(path):
        for r in json.loads(line).get(keys[0], []):
            for s in r.get(keys[1], []):
                for i in s.get(keys[2], []):
                    out.append((r, s, i))
    return out


KINDS = {1: "Internal", 2: "Server", 3: "Client", 4: "Producer", 5: "Consumer"}


def send_spans(port: int, n: int):
    """`n` traces from the Python SDK: a server root with attributes of several types, an
    event and an error status, and a client child linked to the previous trace's root."""
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout", "host.name": "node-1"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)))
    tracer = provider.get_tracer("shop", "1.4.2")
    previous = None
    for i in range(n):
        with tracer.start_as_current_span(
            f"GET /cart/{i % 7}",
            kind=SpanKind.SERVER,
            attributes={"http.route": "/cart", "attempt": i, "ratio": 0.25, "cached": i % 2 == 0, "tags": ["a", "b"]},
        ) as root:
            root.add_event("retry", {"n": i})
            if i % 5 == 0:
                root.set_status(Status(StatusCode.ERROR, "upstream timed out"))
            links = [Link(previous)] if previous else []
            with tracer.start_as_current_span("SELECT cart", kind=SpanKind.CLIENT, links=links):
                pass
            previous = root.get_span_context()
    assert provider.force_flush(30_000)
    provider.shutdown()


def send_logs_and_metrics(port: int, logs: int):
    res = Resource.create({"service.name": "checkout"})
    lp = LoggerProvider(resource=res)
    lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"127.0.0.1:{port}", insecure=True)))
    log = logging.getLogger(f"clickhouse-e2e-{port}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(logger_provider=lp))
    tracer = TracerProvider(resource=res).get_tracer("t")
    for i in range(logs):
        if i % 10 == 0:
            with tracer.start_as_current_span("job"):
                log.error("payment %d failed", i, extra={"order.id": i})
        else:
            log.info("cart %d updated", i, extra={"order.id": i})
    assert lp.force_flush(30_000)
    lp.shutdown()
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"127.0.0.1:{port}", insecure=True), export_interval_millis=3_600_000
    )
    mp = MeterProvider(resource=res, metric_readers=[reader])
    meter = mp.get_meter("shop-metrics", "2.0")
    meter.create_counter("orders", unit="1", description="orders placed").add(5, {"region": "eu"})
    meter.create_up_down_counter("queue.depth").add(-3, {"queue": "q1"})
    h = meter.create_histogram("latency", unit="ms")
    for v in (1, 7, 30, 300):
        h.record(v, {"route": "/cart"})
    meter.create_gauge("temperature").set(21.5, {"room": "a"})
    assert mp.force_flush(30_000)
    mp.shutdown()


def test_sdk_traces_land_in_the_collector_schema_field_by_field(clickhouse, sightline_factory):
    sl = start(sightline_factory, clickhouse, "otel_t")
    n = 1500
    send_spans(sl.grpc, n)
    assert wait_until(lambda: len(file_items(sl.tmp / "traces.jsonl", "traces")) == 2 * n, 60)
    sent = file_items(sl.tmp / "traces.jsonl", "traces")
    assert wait_until(lambda: clickhouse.count("otel_t.otel_traces") == 2 * n, 60), (
        clickhouse.count("otel_t.otel_traces"), (sl.tmp / "stderr.log").read_text()[-3000:])
    rows = {r["SpanId"]: r for r in clickhouse.rows(
        "SELECT *, toUnixTimestamp64Nano(Timestamp) AS ts_ns, arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) AS ev_ns "
        "FROM otel_t.otel_traces")}
    assert len(rows) == 2 * n
    for res, scope, span in sent:
        row = rows[span["spanId"]]
        ra = attrs(res["resource"]["attributes"])
        assert row["TraceId"] == span["traceId"]
        assert row["ParentSpanId"] == span.get("parentSpanId", "")
        assert row["TraceState"] == span.get("traceState", "")
        assert row["SpanName"] == span["name"]
        assert row["SpanKind"] == KINDS[span["kind"]]
        assert row["ServiceName"] == "checkout"
        assert row["OwnerTeam"] == "payments" == ra["owner.team"]
        assert row["ResourceAttributes"] == ra
        assert (row["ScopeName"], row["ScopeVersion"]) == (scope["scope"]["name"], scope["scope"].get("version", ""))
        assert row["SpanAttributes"] == attrs(span.get("attributes")), span
        assert int(row["ts_ns"]) == int(span["startTimeUnixNano"])
        assert int(row["Duration"]) == int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])
        status = span.get("status", {})
        assert row["StatusCode"] == {0: "Unset", 1: "Ok", 2: "Error"}[status.get("code", 0)]
        assert row["StatusMessage"] == status.get("message", "")
        events = span.get("events", [])
        assert row["Events.Name"] == [e["name"] for e in events]
        assert [int(t) for t in row["ev_ns"]] == [int(e["timeUnixNano"]) for e in events]
        assert row["Events.Attributes"] == [attrs(e.get("attributes")) for e in events]
        links = span.get("links", [])
        assert row["Links.TraceId"] == [link["traceId"] for link in links]
        assert row["Links.SpanId"] == [link["spanId"] for link in links]
    # A sample of the values as the collector writes them.
    sample = next(r for r in rows.values() if r["SpanName"] == "GET /cart/3")
    assert sample["SpanAttributes"]["tags"] == '["a","b"]' and sample["SpanAttributes"]["ratio"] == "0.25"
    assert sample["SpanAttributes"]["cached"] in ("true", "false")

    # Grafana's trace-by-id query: the time range from the lookup table the view fills.
    trace_id = sample["TraceId"]
    grafana = f"""
WITH '{trace_id}' as __gf_trace_id,
 (SELECT min(Start) FROM "otel_t"."otel_traces_trace_id_ts" WHERE TraceId = __gf_trace_id) as __gf_trace_start,
 (SELECT max(End) + 1 FROM "otel_t"."otel_traces_trace_id_ts" WHERE TraceId = __gf_trace_id) as __gf_trace_end
SELECT "TraceId" as traceID, "SpanId" as spanID, "ParentSpanId" as parentSpanID, "ServiceName" as serviceName,
 "SpanName" as operationName, multiply(toUnixTimestamp64Nano("Timestamp"), 0.000001) as startTime,
 multiply("Duration", 0.000001) as duration,
 arrayMap(key -> map('key', key, 'value',"SpanAttributes"[key]), mapKeys("SpanAttributes")) as tags,
 arrayMap(key -> map('key', key, 'value',"ResourceAttributes"[key]), mapKeys("ResourceAttributes")) as serviceTags,
 if("StatusCode" IN ('Error', 'STATUS_CODE_ERROR'), 2, 0) as statusCode,
 arrayMap((name, timestamp, attributes) -> tuple(name, toString(toUnixTimestamp64Milli(timestamp)), arrayMap(key -> map('key', key, 'value', attributes[key]), mapKeys(attributes)))::Tuple(name String, timestamp String, fields Array(Map(String, String))), "Events".Name, "Events".Timestamp, "Events".Attributes) AS logs,
 arrayMap((traceID, spanID, attributes) -> tuple(traceID, spanID, arrayMap(key -> map('key', key, 'value', attributes[key]), mapKeys(attributes)))::Tuple(traceID String, spanID String, tags Array(Map(String, String))), "Links".TraceId, "Links".SpanId, "Links".Attributes) AS references,
 "SpanKind" as kind, "StatusMessage" as statusMessage, "TraceState" as traceState
FROM "otel_t"."otel_traces" WHERE traceID = __gf_trace_id AND "Timestamp" >= __gf_trace_start AND "Timestamp" <= __gf_trace_end
"""
    found = clickhouse.rows(grafana)
    assert sorted(r["operationName"] for r in found) == ["GET /cart/3", "SELECT cart"], found
    assert {r["serviceName"] for r in found} == {"checkout"}
    # Per team: spans and p99 duration by OwnerTeam, the column Sightline adds.
    per_team = clickhouse.rows("SELECT OwnerTeam, count() AS spans FROM otel_t.otel_traces GROUP BY OwnerTeam")
    assert [(r["OwnerTeam"], int(r["spans"])) for r in per_team] == [("payments", 2 * n)]


def start(factory, ch, database, extra=""):
    """Sightline with the clickhouse exporter and a file exporter per signal (the reference)."""
    return factory(
        exporters=exporter(ch, database, extra) + DEFAULT_EXPORTERS.format(tmp="@TMP@"),
        pipeline_exporters={s: f"[clickhouse, file/{s}]" for s in ("traces", "logs", "metrics")},
    )


def test_sdk_logs_land_in_the_collector_schema_and_grafana_finds_them(clickhouse, sightline_factory):
    sl = start(sightline_factory, clickhouse, "otel_l")
    n = 1000
    send_logs_and_metrics(sl.grpc, n)
    assert wait_until(lambda: len(file_items(sl.tmp / "logs.jsonl", "logs")) == n, 60)
    assert wait_until(lambda: clickhouse.count("otel_l.otel_logs") == n, 60), (sl.tmp / "stderr.log").read_text()[-3000:]
    rows = {r["Body"]: r for r in clickhouse.rows("SELECT *, toUnixTimestamp64Nano(Timestamp) AS ts_ns FROM otel_l.otel_logs")}
    assert len(rows) == n
    for res, scope, rec in file_items(sl.tmp / "logs.jsonl", "logs"):
        body = rec["body"]["stringValue"]
        row = rows[body]
        ts = int(rec.get("timeUnixNano", 0)) or int(rec["observedTimeUnixNano"])
        assert int(row["ts_ns"]) == ts
        assert row["TraceId"] == rec.get("traceId", "") and row["SpanId"] == rec.get("spanId", "")
        assert int(row["TraceFlags"]) == rec.get("flags", 0) & 0xFF
        assert (row["SeverityText"], int(row["SeverityNumber"])) == (rec.get("severityText", ""), rec.get("severityNumber", 0))
        assert (row["ServiceName"], row["OwnerTeam"]) == ("checkout", "payments")
        assert row["ResourceAttributes"] == attrs(res["resource"]["attributes"])
        assert row["ScopeName"] == scope["scope"]["name"]
        assert row["LogAttributes"] == attrs(rec.get("attributes")), rec
        assert row["EventName"] == rec.get("eventName", "")
    errors = [r for r in rows.values() if r["SeverityText"] == "ERROR"]
    assert len(errors) == n // 10 and all(len(r["TraceId"]) == 32 for r in errors)
    # Grafana's logs query (OpenTelemetry mode, schema 1.3.0: filtered on Timestamp).
    grafana = clickhouse.rows(
        'SELECT Timestamp as "timestamp", Body as "body", SeverityText as "level" FROM "otel_l"."otel_logs" '
        "WHERE ( Timestamp >= now() - INTERVAL 1 HOUR AND Timestamp <= now() + INTERVAL 1 MINUTE ) "
        "AND ( ServiceName = 'checkout' ) AND ( SeverityText = 'ERROR' ) ORDER BY timestamp DESC LIMIT 1000"
    )
    assert len(grafana) == n // 10 and all(r["body"].startswith("payment ") for r in grafana)


def test_sdk_metrics_go_to_their_tables_field_by_field(clickhouse, sightline_factory):
    sl = start(sightline_factory, clickhouse, "otel_m")
    send_logs_and_metrics(sl.grpc, 1)
    points = []  # (table, metric name, resource, scope, metric, point)
    tables = {"sum": "otel_metrics_sum", "gauge": "otel_metrics_gauge", "histogram": "otel_metrics_histogram"}

    def sent():
        points.clear()
        for res, scope, metric in file_items(sl.tmp / "metrics.jsonl", "metrics"):
            for kind, table in tables.items():
                for p in metric.get(kind, {}).get("dataPoints", []):
                    points.append((table, kind, res, scope, metric, p))
        return len(points)

    assert wait_until(lambda: sent() == 8, 60), points  # 4 metrics, exported twice (flush, shutdown)
    total = lambda: sum(clickhouse.count(f"otel_m.{t}") for t in tables.values())  # noqa: E731
    assert wait_until(lambda: total() == 8, 60), (total(), (sl.tmp / "stderr.log").read_text()[-3000:])
    # The collector's (v0.165) metrics tables keep times in seconds (DateTime): a point is found by
    # its metric, attributes and second, and must match one of those rows field by field.
    for table, kind, res, scope, metric, p in points:
        rows = clickhouse.rows(
            f"SELECT *, toUnixTimestamp(TimeUnix) AS t_s, toUnixTimestamp(StartTimeUnix) AS s_s "
            f"FROM otel_m.{table} WHERE MetricName = '{metric['name']}' AND toUnixTimestamp(TimeUnix) = {int(p['timeUnixNano']) // 10**9}"
        )
        assert rows, (metric["name"], p)

        def matches(row):
            checks = [
                (row["ServiceName"], row["OwnerTeam"]) == ("checkout", "payments"),
                row["ResourceAttributes"] == attrs(res["resource"]["attributes"]),
                (row["ScopeName"], row["ScopeVersion"]) == ("shop-metrics", "2.0"),
                (row["MetricDescription"], row["MetricUnit"]) == (metric.get("description", ""), metric.get("unit", "")),
                row["Attributes"] == attrs(p.get("attributes")),
                int(row["s_s"]) == int(p.get("startTimeUnixNano", 0)) // 10**9,
            ]
            if kind in ("sum", "gauge"):
                checks.append(float(row["Value"]) == (float(p["asDouble"]) if "asDouble" in p else float(int(p["asInt"]))))
            if kind == "sum":
                s = metric["sum"]
                checks.append(int(row["AggregationTemporality"]) == s["aggregationTemporality"])
                checks.append(bool(row["IsMonotonic"]) == s.get("isMonotonic", False))
            if kind == "histogram":
                checks += [
                    (int(row["Count"]), float(row["Sum"])) == (int(p["count"]), float(p["sum"])),
                    [int(c) for c in row["BucketCounts"]] == [int(c) for c in p["bucketCounts"]],
                    [float(b) for b in row["ExplicitBounds"]] == [float(b) for b in p["explicitBounds"]],
                    (float(row["Min"]), float(row["Max"])) == (float(p["min"]), float(p["max"])),
                ]
            return all(checks)

        assert any(matches(r) for r in rows), (metric["name"], p, rows)
    assert {r["MetricName"] for r in clickhouse.rows("SELECT MetricName FROM otel_m.otel_metrics_sum")} == {"orders", "queue.depth"}


def test_a_collector_made_table_without_the_ownership_column_is_written_as_it_is(clickhouse, sightline_factory):
    """A logs table created by the collector before EventName and without OwnerTeam (as an
    existing ClickHouse would have it): Sightline reads its columns and writes only those."""
    clickhouse.query("CREATE DATABASE IF NOT EXISTS old", "TabSeparated")
    clickhouse.query(
        """CREATE TABLE old.otel_logs (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)), TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String, SpanId String, TraceFlags UInt8, SeverityText LowCardinality(String), SeverityNumber UInt8,
    ServiceName LowCardinality(String), Body String, ResourceSchemaUrl LowCardinality(String),
    ResourceAttributes Map(LowCardinality(String), String), ScopeSchemaUrl LowCardinality(String), ScopeName String,
    ScopeVersion LowCardinality(String), ScopeAttributes Map(LowCardinality(String), String),
    LogAttributes Map(LowCardinality(String), String)
) ENGINE = MergeTree() PARTITION BY toDate(TimestampTime) ORDER BY (ServiceName, TimestampTime, Timestamp)""",
        "TabSeparated",
    )
    sl = start(sightline_factory, clickhouse, "old", "    create_schema: false\n")
    send_logs_and_metrics(sl.grpc, 20)
    assert wait_until(lambda: clickhouse.count("old.otel_logs") == 20, 60), (sl.tmp / "stderr.log").read_text()[-3000:]
    row = clickhouse.rows("SELECT ServiceName, ResourceAttributes, TimestampTime FROM old.otel_logs LIMIT 1")[0]
    assert row["ServiceName"] == "checkout" and row["ResourceAttributes"]["owner.team"] == "payments"


def test_wrong_credentials_are_refused_and_named(tmp_path_factory, sightline_factory):
    """An endpoint that requires a user: the right one writes; a wrong password is a
    permanent error naming ClickHouse's message, counted as failed sends."""
    ch = ClickHouse(tmp_path_factory.mktemp("chdb-auth"), user="writer", password="s3cret")
    try:
        good = start(sightline_factory, ch, "otel_auth", "    username: writer\n    password: s3cret\n")
        bad = start(sightline_factory, ch, "otel_auth2", "    username: writer\n    password: wrong\n")
        send_logs_and_metrics(good.grpc, 5)
        send_logs_and_metrics(bad.grpc, 5)
        assert wait_until(lambda: ch.count("otel_auth.otel_logs") == 5, 60), (good.tmp / "stderr.log").read_text()[-3000:]
        assert wait_until(lambda: "Authentication failed" in (bad.tmp / "stderr.log").read_text(), 30)
        failed = re.search(r'otelcol_exporter_send_failed_log_records\{exporter="clickhouse"\} (\d+)', bad.metrics())
        assert failed and int(failed.group(1)) == 5, bad.metrics()
        assert "s3cret" not in (good.tmp / "stderr.log").read_text() + good.metrics()
    finally:
        ch.stop()


DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "traces-by-team.json"


def grafana_sql(sql: str, database: str, team: str, start: int, end: int, interval: int = 60) -> str:
    """A panel's SQL as the ClickHouse plugin sends it: Grafana's variables substituted, then the
    plugin's macros expanded the way its backend expands them."""
    sql = sql.replace("${database}", database).replace("${team:singlequote}", f"'{team}'")
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m[1]} >= toDateTime({start}) AND {m[1]} <= toDateTime({end})", sql)
    sql = re.sub(r"\$__timeInterval\(([^)]+)\)", lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {interval} second)", sql)
    sql = sql.replace("$__interval_s", str(interval))
    assert "$" not in sql, sql
    return sql


def test_the_traces_by_team_dashboard_queries_return_data(clickhouse, sightline_factory):
    """Every query of deploy/grafana/dashboards/traces-by-team.json, and its team variable's,
    on the tables Sightline wrote, over the last hour as Grafana's default range is."""
    sl = start(sightline_factory, clickhouse, "otel_dash")
    send_spans(sl.grpc, 50)
    send_logs_and_metrics(sl.grpc, 30)
    assert wait_until(lambda: clickhouse.count("otel_dash.otel_traces") == 100, 60)
    assert wait_until(lambda: clickhouse.count("otel_dash.otel_logs") == 30, 60)
    dashboard = json.loads(DASHBOARD.read_text())
    now = int(time.time())
    window = dict(database="otel_dash", team="payments", start=now - 3600, end=now + 60)
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "team")
    teams = clickhouse.rows(grafana_sql(variable["query"], **window))
    assert [r["OwnerTeam"] for r in teams] == ["payments"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["type"] == "grafana-clickhouse-datasource"
            rows = clickhouse.rows(grafana_sql(target["rawSql"], **window))
            assert rows, (panel["title"], target["rawSql"])
            team_col = "OwnerTeam" if "OwnerTeam" in rows[0] else "team"
            assert {r[team_col] for r in rows} == {"payments"}, (panel["title"], rows[:3])
    services = clickhouse.rows(grafana_sql(dashboard["panels"][4]["targets"][0]["rawSql"], **window))
    assert [(r["service"], int(r["spans"])) for r in services] == [("checkout", 100)]
    assert float(services[0]["error_ratio"]) == 0.1  # every fifth root is an error: 10 of 100 spans
