"""The parquet exporter's store read back with the tools users already have: pyarrow and
DuckDB. The Python SDK sends all three signals through the ownership processor; every span,
event, link, log record and data point is compared with what Sightline received, as its file
exporter wrote it in the same pipeline. A kill -9 in the middle of writes must leave only
complete files in the store."""

import os
import signal
import threading
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from conftest import DEFAULT_EXPORTERS, Sightline, wait_until
from test_clickhouse import KINDS, attrs, file_items, send_logs_and_metrics, send_spans


def parquet_exporter(extra: str = "") -> str:
    return f"""
  parquet:
    path: "@TMP@/store"
    rotation: {{ max_age: 2s }}
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
{extra}"""


def start(factory, extra=""):
    return factory(
        exporters=parquet_exporter(extra) + DEFAULT_EXPORTERS.format(tmp="@TMP@"),
        pipeline_exporters={s: f"[parquet, file/{s}]" for s in ("traces", "logs", "metrics")},
    )


def store_files(root: Path, table: str | None = None):
    base = root / f"signal={table}" if table else root
    return sorted(p for p in base.rglob("*") if p.is_file())


def table_rows(root: Path, table: str):
    """Every row of `table`, read file by file with pyarrow (the file's own columns only)."""
    rows = []
    for f in store_files(root, table):
        assert f.suffix == ".parquet" and f.name.startswith("part-"), f
        rows.extend(pq.read_table(f).to_pylist())
    return rows


def as_map(m) -> dict:
    return dict(m or [])


def test_sdk_signals_land_in_the_store_field_by_field_and_duckdb_queries_them(sightline_factory):
    sl = start(sightline_factory)
    n = 600
    send_spans(sl.grpc, n)
    send_logs_and_metrics(sl.grpc, 300)
    assert wait_until(lambda: len(file_items(sl.tmp / "traces.jsonl", "traces")) == 2 * n, 60)
    assert wait_until(lambda: len(file_items(sl.tmp / "logs.jsonl", "logs")) == 300, 60)
    assert wait_until(lambda: len(file_items(sl.tmp / "metrics.jsonl", "metrics")) >= 4, 60)
    sl.stop()  # completes the open files
    store = sl.tmp / "store"
    assert not [p for p in store.rglob(".*") if p.is_file()], "no temporary file is left after a clean stop"

    # Spans: every one, every field, from the raw int64 timestamps.
    spans = {}
    for f in store_files(store, "spans"):
        t = pq.read_table(f)
        raw = {c: t.column(c).cast("int64").to_pylist() for c in ("start_time", "end_time")}
        for i, r in enumerate(t.to_pylist()):
            r["start_ns"], r["end_ns"] = raw["start_time"][i], raw["end_time"][i]
            assert f.parent.name == "owner_team=payments" and r["owner_team"] == "payments"
            spans[r["span_id"]] = r
    sent = file_items(sl.tmp / "traces.jsonl", "traces")
    assert len(spans) == len(sent) == 2 * n
    events, links = 0, 0
    for res, scope, span in sent:
        row = spans[span["spanId"]]
        assert row["trace_id"] == span["traceId"]
        assert row["parent_span_id"] == span.get("parentSpanId")
        assert row["name"] == span["name"]
        assert row["kind"] == KINDS[span["kind"]]
        assert (row["start_ns"], row["end_ns"]) == (int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"]))
        assert row["duration_ns"] == int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])
        assert row["service_name"] == "checkout"
        assert as_map(row["resource_attributes"]) == attrs(res["resource"]["attributes"])
        assert (row["scope_name"], row["scope_version"]) == (scope["scope"]["name"], scope["scope"].get("version", ""))
        assert as_map(row["attributes"]) == attrs(span.get("attributes")), span
        assert row["http_route"] == attrs(span.get("attributes")).get("http.route")
        status = span.get("status", {})
        assert row["status_code"] == {0: "Unset", 1: "Ok", 2: "Error"}[status.get("code", 0)]
        assert row["status_message"] == (status.get("message") or None)
        assert row["event_count"] == len(span.get("events", []))
        assert row["link_count"] == len(span.get("links", []))
        events += len(span.get("events", []))
        links += len(span.get("links", []))
    ev = table_rows(store, "span_events")
    assert len(ev) == events == n
    by_span = {e["span_id"]: e for e in ev}
    for _, _, span in sent:
        for e in span.get("events", []):
            row = by_span[span["spanId"]]
            assert (row["name"], row["span_name"], row["trace_id"]) == (e["name"], span["name"], span["traceId"])
            assert as_map(row["attributes"]) == attrs(e.get("attributes"))
    lk = table_rows(store, "span_links")
    assert len(lk) == links == n - 1
    want_links = {(s["spanId"], link["traceId"], link["spanId"]) for _, _, s in sent for link in s.get("links", [])}
    assert {(r["span_id"], r["linked_trace_id"], r["linked_span_id"]) for r in lk} == want_links

    # Logs.
    logs = {r["body"]: r for r in table_rows(store, "logs")}
    sent_logs = file_items(sl.tmp / "logs.jsonl", "logs")
    assert len(logs) == len(sent_logs) == 300
    for res, scope, rec in sent_logs:
        row = logs[rec["body"]["stringValue"]]
        assert row["trace_id"] == rec.get("traceId") and row["span_id"] == rec.get("spanId")
        assert (row["severity_text"], row["severity_number"]) == (rec.get("severityText"), rec.get("severityNumber", 0))
        assert row["flags"] == rec.get("flags", 0)
        assert (row["service_name"], row["owner_team"]) == ("checkout", "payments")
        assert as_map(row["attributes"]) == attrs(rec.get("attributes")), rec
        assert as_map(row["resource_attributes"]) == attrs(res["resource"]["attributes"])

    # Metrics: each point in its type's table.
    kinds = {"sum": "metrics_sum", "gauge": "metrics_gauge", "histogram": "metrics_histogram"}
    want = []
    for _, _, metric in file_items(sl.tmp / "metrics.jsonl", "metrics"):
        for kind, table in kinds.items():
            for p in metric.get(kind, {}).get("dataPoints", []):
                want.append((table, metric["name"], p))
    got = {t: table_rows(store, t) for t in kinds.values()}
    assert sum(len(v) for v in got.values()) == len(want) == 8
    for table, name, p in want:
        matches = [r for r in got[table] if r["metric_name"] == name and as_map(r["attributes"]) == attrs(p.get("attributes"))]
        assert matches, (table, name, p)
        r = matches[0]
        assert r["owner_team"] == "payments"
        if table == "metrics_histogram":
            assert (r["count"], r["sum"]) == (int(p["count"]), float(p["sum"]))
            assert r["bucket_counts"] == [int(c) for c in p["bucketCounts"]]
            assert r["explicit_bounds"] == [float(b) for b in p["explicitBounds"]]
        else:
            assert r["value"] == (float(p["asDouble"]) if "asDouble" in p else float(int(p["asInt"])))

    # DuckDB over the whole store, Hive partitions included: the README's queries.
    con = duckdb.connect()
    glob = f"{store}/signal=spans/**/*.parquet"
    per_team = con.execute(
        f"SELECT owner_team, count(*) FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY owner_team"
    ).fetchall()
    assert per_team == [("payments", 2 * n)]
    p99 = con.execute(
        f"SELECT service_name, quantile_cont(duration_ns, 0.99) / 1e6 AS p99_ms, count(*) "
        f"FROM read_parquet('{glob}') GROUP BY service_name"
    ).fetchall()
    assert len(p99) == 1 and p99[0][0] == "checkout" and p99[0][2] == 2 * n and p99[0][1] > 0
    routes = con.execute(
        f"SELECT attributes['http.route'], count(*) FROM read_parquet('{glob}') WHERE kind = 'Server' GROUP BY 1"
    ).fetchall()
    assert routes == [("/cart", n)]


def test_resources_without_the_owner_attribute_get_the_default_partition(sightline_factory):
    """The ownership processor gives every resource a team (`unowned` at worst), so the owner
    attribute here is `owner.system`, which the catalog sets for `checkout` only."""
    sl = start(sightline_factory, "    owner_team_attribute: owner.system\n")
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    for service in ("checkout", "unknown-svc"):
        tp = TracerProvider(resource=Resource.create({"service.name": service}))
        tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{sl.grpc}", insecure=True)))
        with tp.get_tracer("t").start_as_current_span("op"):
            pass
        tp.shutdown()
    assert wait_until(lambda: len(file_items(sl.tmp / "traces.jsonl", "traces")) == 2, 30)
    sl.stop()
    parts = {f.parent.name: pq.read_table(f).to_pylist() for f in store_files(sl.tmp / "store", "spans")}
    assert set(parts) == {"owner_team=storefront", "owner_team=__HIVE_DEFAULT_PARTITION__"}
    unowned = parts["owner_team=__HIVE_DEFAULT_PARTITION__"]
    assert [(r["service_name"], r["owner_team"]) for r in unowned] == [("unknown-svc", None)]
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT service_name, owner_team FROM read_parquet('{sl.tmp}/store/signal=spans/**/*.parquet', hive_partitioning = true) ORDER BY 1"
    ).fetchall()
    assert rows == [("checkout", "storefront"), ("unknown-svc", None)]


def test_kill_9_during_writes_leaves_only_complete_files(tmp_path):
    """Spans stream in while Sightline is killed with SIGKILL three times; after each kill,
    every file in the store (all but hidden temporaries) is a complete Parquet file, and a
    restart removes the temporaries. What the killed process had not completed is lost (as a
    memory queue's contents are); what it completed stays readable."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    store = tmp_path / "store"
    exporters = f"""
  parquet:
    path: "{store}"
    rotation: {{ max_age: 1s, max_megabytes: 1 }}
    row_group_megabytes: 1
    sending_queue: {{ batch: {{ flush_timeout: 20ms }} }}
"""
    ports = None
    completed_before = 0
    for round_ in range(3):
        d = tmp_path / f"run{round_}"
        d.mkdir()
        sl = Sightline(d, exporters=exporters, pipeline_exporters="[parquet]", ports=ports)
        ports = (sl.grpc, sl.http, sl.admin)
        leftovers = [p for p in store.rglob(".*.tmp")]
        assert not leftovers, f"the restart removed the temporaries: {leftovers}"
        tp = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
        tp.add_span_processor(
            # A short export timeout: after the kill, the SDK's retries to a dead port end soon.
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"127.0.0.1:{sl.grpc}", insecure=True, timeout=1), schedule_delay_millis=20
            )
        )
        tracer = tp.get_tracer("t")
        stop = threading.Event()

        def produce():
            i = 0
            while not stop.is_set():
                with tracer.start_as_current_span(f"op-{i}", attributes={"payload": "x" * 200, "i": i}):
                    pass
                i += 1
                if i % 200 == 0:
                    time.sleep(0.01)

        t = threading.Thread(target=produce)
        t.start()
        # Let files complete and new ones open, then kill in the middle of writes.
        assert wait_until(lambda: len(list(store.rglob("part-*.parquet"))) > completed_before, 30)
        assert wait_until(lambda: any(store.rglob(".*.tmp")), 30), "a file is open when the kill comes"
        os.kill(sl.proc.pid, signal.SIGKILL)
        sl.proc.wait()
        stop.set()
        t.join()
        tp.shutdown()
        sl.stderr.close()
        complete = sorted(store.rglob("part-*.parquet"))
        assert len(complete) > completed_before
        completed_before = len(complete)
        for f in store.rglob("*"):
            if f.is_file() and not f.name.startswith("."):
                assert f.suffix == ".parquet", f
                meta = pq.read_metadata(f)  # a partial file has no footer and fails here
                assert meta.num_rows > 0, f
                assert len(pq.read_table(f)) == meta.num_rows
    # DuckDB reads the whole store as one table.
    n = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{store}/signal=spans/**/*.parquet')").fetchone()[0]
    assert n == sum(pq.read_metadata(f).num_rows for f in store.rglob("part-*.parquet"))
