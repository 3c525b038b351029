"""The `kafka` exporter against a real Apache Kafka 4.4.0 broker (KRaft, peer_kafka.py): the
Python SDK sends traces, logs and metrics to Sightline, which writes them to Kafka; the test
reads the topics back with its own client (confluent-kafka) and decodes every message as the
collector's kafkareceiver would (OTLP protobuf or OTLP/JSON)."""

import logging
import os
import subprocess

import pytest
from conftest import DEFAULT_EXPORTERS, collector, complete_lines, free_port, wait_until
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from peer_kafka import Kafka
from google.protobuf import json_format


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    # `secure`: SASL and TLS listeners next to the plaintext one, for the auth tests.
    k = Kafka(tmp_path_factory.mktemp("kafka"), secure=True)
    yield k
    k.print_log()
    k.stop()


def kafka_exporter(kafka, extra: str = "", name: str = "kafka") -> str:
    return f"""
  {name}:
    brokers: ["{kafka.bootstrap}"]
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
{extra}"""


def send_logs_and_metrics(port: int, service: str, logs: int, counter: int = 1):
    """`logs` log records and one counter (added `counter`) from the Python SDK over gRPC."""
    res = Resource.create({"service.name": service})
    lp = LoggerProvider(resource=res)
    lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"127.0.0.1:{port}", insecure=True)))
    log = logging.getLogger(f"kafka-e2e-{service}-{port}")
    log.propagate = False
    log.addHandler(LoggingHandler(logger_provider=lp))
    for i in range(logs):
        log.warning("disk almost full %d", i)
    assert lp.force_flush(10_000)
    lp.shutdown()
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"127.0.0.1:{port}", insecure=True), export_interval_millis=3_600_000
    )
    mp = MeterProvider(resource=res, metric_readers=[reader])
    mp.get_meter("kafka-e2e").create_counter("requests").add(counter)
    assert mp.force_flush(10_000)
    # Shutting down exports the cumulative sum once more.
    mp.shutdown()


def send_traces(port: int, spans: int, service: str = "checkout", per_trace: int = 1):
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)))
    tracer = provider.get_tracer("kafka-e2e")
    for i in range(spans // per_trace):
        with tracer.start_as_current_span(f"root-{i}"):
            for j in range(per_trace - 1):
                with tracer.start_as_current_span(f"child-{i}-{j}"):
                    pass
    assert provider.force_flush(10_000)
    provider.shutdown()


def decode(signal: str, value: bytes, encoding: str):
    kinds = {"traces": ExportTraceServiceRequest, "logs": ExportLogsServiceRequest, "metrics": ExportMetricsServiceRequest}
    msg = kinds[signal]()
    if encoding == "otlp_json":
        json_format.Parse(value, msg)
    else:
        msg.ParseFromString(value)
    return msg


def resources(signal: str, req):
    return getattr(req, {"traces": "resource_spans", "logs": "resource_logs", "metrics": "resource_metrics"}[signal])


def attrs(resource) -> dict:
    return {a.key: a.value.string_value for a in resource.attributes}


def count_items(signal: str, msgs, encoding: str):
    """(items, owner teams) of the messages."""
    got, owners = 0, set()
    for m in msgs:
        for r in resources(signal, decode(signal, m.value(), encoding)):
            owners.add(attrs(r.resource).get("owner.team"))
            if signal == "traces":
                got += sum(len(ss.spans) for ss in r.scope_spans)
            elif signal == "logs":
                got += sum(len(x.log_records) for x in r.scope_logs)
            else:
                got += sum(len(x.sum.data_points) for sm in r.scope_metrics for x in sm.metrics)
    return got, owners


def spans_of(req):
    return [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
def test_sdk_to_sightline_to_kafka_all_signals(kafka, sightline_factory, encoding):
    topics = {s: f"{s}-{encoding}" for s in ("traces", "logs", "metrics")}
    per_signal = "".join(f"    {s}: {{ topic: {t}, encoding: {encoding} }}\n" for s, t in topics.items())
    per_signal += "    record_headers: [{ name: fleet, value: eu-1 }]\n    signal_header: true\n"
    sl = sightline_factory(exporters=kafka_exporter(kafka, per_signal), pipeline_exporters="[kafka]")
    send_traces(sl.grpc, 50)
    send_logs_and_metrics(sl.grpc, "search-api", 10, 5)

    want = {"traces": 50, "logs": 10, "metrics": 1}
    for signal, topic in topics.items():
        msgs = []

        def arrived():
            msgs[:] = kafka.consume(topic, 10_000, timeout=3)
            return count_items(signal, msgs, encoding)[0] >= want[signal]

        assert wait_until(arrived, 40), (signal, count_items(signal, msgs, encoding), (sl.tmp / "stderr.log").read_text())
        got, owners = count_items(signal, msgs, encoding)
        # The meter provider exports the cumulative sum again when it shuts down.
        assert got == want[signal] or (signal == "metrics" and got == 2), (signal, got)
        assert owners == {"payments" if signal == "traces" else "search"}, owners
        assert all(m.key() is None for m in msgs), "no partitioning: no key, as the collector's"
        headers = {tuple(m.headers() or []) for m in msgs}
        assert headers == {(("fleet", b"eu-1"), ("otelcol.signal", signal.encode()))}, headers
    m = sl.metrics()
    assert 'otelcol_exporter_sent_spans{exporter="kafka"} 50' in m, m


def test_partition_traces_by_id_keys_each_trace_and_keeps_it_in_one_partition(kafka, sightline_factory):
    kafka.create_topic("spans-by-id", partitions=4)
    sl = sightline_factory(
        exporters=kafka_exporter(kafka, "    traces: { topic: spans-by-id }\n    partition_traces_by_id: true\n"),
        pipeline_exporters="[kafka]",
    )
    send_traces(sl.grpc, 120, per_trace=4)
    msgs = kafka.consume("spans-by-id", 30, timeout=30)
    assert len(msgs) == 30, "one message per trace"
    partitions_of: dict[bytes, set] = {}
    for m in msgs:
        spans = spans_of(decode("traces", m.value(), "otlp_proto"))
        ids = {s.trace_id.hex() for s in spans}
        assert len(spans) == 4 and ids == {m.key().decode()}, (ids, m.key())
        partitions_of.setdefault(m.key(), set()).add(m.partition())
        # The collector's default partitioner (sarama_compat): FNV-1a 32 as a signed integer.
        h = 0x811C9DC5
        for b in m.key():
            h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
        signed = h - (1 << 32) if h >= 1 << 31 else h
        assert m.partition() == abs(int(signed - 4 * int(signed / 4))), (m.key(), m.partition())
    assert all(len(p) == 1 for p in partitions_of.values())
    assert len({p for ps in partitions_of.values() for p in ps}) > 1, "30 traces over 4 partitions"


def test_a_request_larger_than_max_message_bytes_is_split_to_fit(kafka, sightline_factory):
    sl = sightline_factory(
        exporters=kafka_exporter(kafka, "    traces: { topic: spans-small }\n    producer: { max_message_bytes: 2000 }\n"),
        pipeline_exporters="[kafka]",
    )
    send_traces(sl.grpc, 100)
    names = []

    def read():
        names.clear()
        for m in kafka.consume("spans-small", 1000, timeout=3):
            assert len(m.value()) <= 2000
            names.extend(s.name for s in spans_of(decode("traces", m.value(), "otlp_proto")))
        return len(names) == 100

    assert wait_until(read, 30), len(names)
    assert sorted(names) == sorted(f"root-{i}" for i in range(100))


def test_resource_partitioning_and_topic_from_attribute(kafka, sightline_factory):
    kafka.create_topic("team-payments", partitions=2)
    sl = sightline_factory(
        exporters=kafka_exporter(
            kafka,
            "    logs: { topic: logs-fallback }\n    topic_from_attribute: kafka.topic.test\n"
            "    partition_logs_by_resource_attributes: true\n",
        ),
        pipeline_exporters="[kafka]",
    )
    for service, topic in (("checkout", "team-payments"), ("search-api", None)):
        attrs_ = {"service.name": service}
        if topic:
            attrs_["kafka.topic.test"] = topic
        lp = LoggerProvider(resource=Resource.create(attrs_))
        lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"127.0.0.1:{sl.grpc}", insecure=True)))
        log = logging.getLogger(f"kafka-topic-{service}")
        log.propagate = False
        log.addHandler(LoggingHandler(logger_provider=lp))
        log.error("boom")
        assert lp.force_flush(10_000)
        lp.shutdown()
    routed = kafka.consume("team-payments", 1, timeout=30)
    fallback = kafka.consume("logs-fallback", 1, timeout=30)
    assert len(routed) == 1 and len(fallback) == 1
    for m, service in ((routed[0], "checkout"), (fallback[0], "search-api")):
        req = decode("logs", m.value(), "otlp_proto")
        assert [attrs(r.resource)["service.name"] for r in req.resource_logs] == [service]
        assert m.key() is not None and len(m.key()) == 16, "keyed by the resource's xhash (16 bytes)"


def test_broker_restart_loses_nothing_acknowledged(tmp_path, sightline_factory):
    # Its own broker: the test stops it while Sightline is exporting.
    k = Kafka(tmp_path / "own")
    try:
        sl = sightline_factory(
            exporters=kafka_exporter(
                k, "    traces: { topic: spans-restart }\n    retry_on_failure: { initial_interval: 200ms, max_interval: 1s }\n"
            ),
            pipeline_exporters="[kafka]",
        )
        send_traces(sl.grpc, 40)
        assert len(k.consume("spans-restart", 40, timeout=30)) >= 1
        k.proc.terminate()
        k.proc.wait(timeout=60)
        send_traces(sl.grpc, 60)  # accepted by Sightline while the broker is down
        props = dict(k.props)
        k.log.close()
        k.start(k.jvm + ["kafka.Kafka", str(k.config)], k.dir / "kafka2.log", env=k.env)
        names = []

        def read():
            names.clear()
            for m in k.consume("spans-restart", 1000, timeout=3):
                names.extend(s.name for s in spans_of(decode("traces", m.value(), "otlp_proto")))
            return len(names) >= 100

        assert wait_until(read, 90), (len(names), (sl.tmp / "stderr.log").read_text()[-3000:])
        # Every span of both rounds, none lost (a retried message may appear twice).
        assert {f"root-{i}" for i in range(60)} <= set(names)
        assert props == k.props
    finally:
        k.stop()


def validate(tmp_path, exporter: str) -> str:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        f"""
receivers: {{ otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:0" }} }} }} }}
exporters:
  kafka:
{exporter}
service:
  pipelines: {{ traces: {{ receivers: [otlp], exporters: [kafka] }} }}
"""
    )
    out = subprocess.run([os.environ["SIGHTLINE_BIN"], "validate", "--config", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 1, out.stdout
    return out.stdout + out.stderr


def test_collector_style_mistakes_are_named(tmp_path):
    text = validate(
        tmp_path,
        """    brokers: [localhost:9092]
    topic: spans
    traces: { encoding: jaeger_proto }
    producer: { compression: brotli }
    auth: { sasl: { mechanism: PLAIN } }""",
    )
    for needle in (
        "exporters.kafka.topic",
        "set traces.topic",
        "exporters.kafka.traces.encoding",
        "jaeger_proto",
        "producer.compression",
        "PLAIN needs username and password",
    ):
        assert needle in text, (needle, text)
    text = validate(tmp_path, "    producer: { required_acks: 2 }")
    assert "required_acks" in text and "use 0, 1, -1 or all" in text, text


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
def test_collector_reads_sightline_topics_and_writes_the_same_keys(kafka, sightline_factory, tmp_path, encoding):
    """Differential, through the real collector (contrib v0.165.1 kafkareceiver and
    kafkaexporter, franz-go): Sightline writes the SDK's data to s-* topics with every
    partitioning option on, in `encoding`; the collector reads them and writes them again,
    with the same options and encoding, to c-* topics. The collector's messages must carry exactly Sightline's keys (hex
    trace ids, pdata xhash of the resource), in the same partitions, with the same items and
    the ownership attributes intact."""
    signals = ("traces", "logs", "metrics")
    ours_topic = {s: f"s-{s}-{encoding}" for s in signals}
    theirs_topic = {s: f"c-{s}-{encoding}" for s in signals}
    for s in signals:
        kafka.create_topic(ours_topic[s], partitions=4)
        kafka.create_topic(theirs_topic[s], partitions=4)
    opts = (
        "    partition_traces_by_id: true\n"
        "    partition_metrics_by_resource_attributes: true\n"
        "    partition_logs_by_resource_attributes: true\n"
    )
    sl = sightline_factory(
        exporters=kafka_exporter(kafka, "".join(f"    {s}: {{ topic: {ours_topic[s]}, encoding: {encoding} }}\n" for s in signals) + opts),
        pipeline_exporters="[kafka]",
    )
    components = f"""
receivers:
  kafka:
    brokers: ["{kafka.bootstrap}"]
    initial_offset: earliest
    group_id: interop-{encoding}
{"".join(f"    {s}: {{ topics: [{ours_topic[s]}], encoding: {encoding} }}{chr(10)}" for s in signals)}
exporters:
  kafka:
    brokers: ["{kafka.bootstrap}"]
{"".join(f"    {s}: {{ topic: {theirs_topic[s]}, encoding: {encoding} }}{chr(10)}" for s in signals)}{opts}"""
    with collector(tmp_path, components, {s: "{ receivers: [kafka], exporters: [kafka] }" for s in signals}) as log_path:
        # Two services (two resources, two keys) per signal, several traces of 3 spans.
        for service in ("checkout", "search-api"):
            send_traces(sl.grpc, 30, service=service, per_trace=3)
            send_logs_and_metrics(sl.grpc, service, 1)
        want = {"traces": 20, "logs": 2, "metrics": 2}  # messages: one per trace / per resource
        for s in signals:
            theirs = []
            assert wait_until(lambda: len(theirs.extend(kafka.consume(theirs_topic[s], 1, timeout=1)) or theirs) > 0, 60), (
                s,
                log_path.read_text()[-3000:],
            )
            ours = kafka.consume(ours_topic[s], 10_000, timeout=3)
            theirs = kafka.consume(theirs_topic[s], 10_000, timeout=3)
            assert len(ours) >= want[s], (s, len(ours))
            ours_by_key = {m.key(): m for m in ours}
            theirs_by_key = {m.key(): m for m in theirs}
            assert set(theirs_by_key) == set(ours_by_key), (s, sorted(ours_by_key), sorted(theirs_by_key))
            for k, m in ours_by_key.items():
                t = theirs_by_key[k]
                assert t.partition() == m.partition(), (s, k, m.partition(), t.partition())
                a, b = decode(s, m.value(), encoding), decode(s, t.value(), encoding)
                assert count_items(s, [m], encoding) == count_items(s, [t], encoding)
                assert [attrs(r.resource) for r in resources(s, a)] == [attrs(r.resource) for r in resources(s, b)]
                assert "owner.team" in attrs(resources(s, b)[0].resource)


def read_jsonl_items(path, signal: str):
    """(items, owner teams) in a file exporter's OTLP/JSON lines."""
    import json

    if not path.exists():
        return 0, set()
    top = {"traces": "resourceSpans", "logs": "resourceLogs", "metrics": "resourceMetrics"}[signal]
    n, owners = 0, set()
    for line in complete_lines(path):
        for r in json.loads(line).get(top, []):
            owners.update(a["value"].get("stringValue") for a in r["resource"]["attributes"] if a["key"] == "owner.team")
            for s in r.get({"traces": "scopeSpans", "logs": "scopeLogs", "metrics": "scopeMetrics"}[signal], []):
                if signal == "traces":
                    n += len(s.get("spans", []))
                elif signal == "logs":
                    n += len(s.get("logRecords", []))
                else:
                    n += sum(len(m.get("sum", {}).get("dataPoints", [])) for m in s.get("metrics", []))
    return n, owners


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
def test_collector_to_kafka_to_sightline(kafka, sightline_factory, tmp_path, encoding):
    """The collector's kafkaexporter (franz-go) writes what the Python SDK sent it; Sightline's
    kafka receiver reads it, enriches it and writes it to files: every item arrives, owned."""
    topics = {s: f"col-{s}-{encoding}" for s in ("traces", "logs", "metrics")}
    col_in = free_port()
    components = f"""
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{col_in}" }} }} }}
exporters:
  kafka:
    brokers: ["{kafka.bootstrap}"]
{"".join(f"    {s}: {{ topic: {t}, encoding: {encoding} }}{chr(10)}" for s, t in topics.items())}"""
    receiver = f"""  kafka:
    brokers: ["{kafka.bootstrap}"]
    group_id: sightline-{encoding}
    initial_offset: earliest
{"".join(f"    {s}: {{ topics: [{t}], encoding: {encoding} }}{chr(10)}" for s, t in topics.items())}"""
    sl = sightline_factory(extra_receivers=receiver, pipeline_receivers="[kafka]")
    with collector(tmp_path, components, {s: "{ receivers: [otlp], exporters: [kafka] }" for s in topics}):
        send_traces(col_in, 40)
        send_logs_and_metrics(col_in, "search-api", 7, 3)
        for signal, want, team in (("traces", 40, "payments"), ("logs", 7, "search"), ("metrics", 1, "search")):
            path = sl.tmp / f"{signal}.jsonl"
            assert wait_until(lambda: read_jsonl_items(path, signal)[0] >= want, 60), (
                signal,
                read_jsonl_items(path, signal),
                (sl.tmp / "stderr.log").read_text()[-3000:],
            )
            n, owners = read_jsonl_items(path, signal)
            assert owners == {team}, owners
            assert n == want or (signal == "metrics" and n == 2), (signal, n)
        m = sl.metrics()
        assert 'otelcol_receiver_accepted_spans{receiver="kafka",transport="kafka"} 40' in m, m


def span_request(names: list[str], service: str = "checkout") -> bytes:
    """An ExportTraceServiceRequest of one resource, one scope and a span per name."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    req = ExportTraceServiceRequest()
    rs = ResourceSpans()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    ss = ScopeSpans()
    for i, n in enumerate(names):
        ss.spans.append(
            Span(
                trace_id=(i + 1).to_bytes(16, "big"),
                span_id=(i + 1).to_bytes(8, "big"),
                name=n,
                start_time_unix_nano=1_767_225_600_000_000_000,
                end_time_unix_nano=1_767_225_600_000_100_000,
            )
        )
    rs.scope_spans.append(ss)
    req.resource_spans.append(rs)
    return req.SerializeToString()


def kafka_receiver(kafka, topic: str, group: str, extra: str = "") -> str:
    return f"""  kafka:
    brokers: ["{kafka.bootstrap}"]
    group_id: {group}
    initial_offset: earliest
    traces: {{ topics: [{topic}] }}
{extra}"""


def spans_in_files(dirs) -> list[str]:
    import json

    names = []
    for d in dirs:
        path = d / "traces.jsonl"
        if path.exists():
            for line in complete_lines(path):
                for r in json.loads(line).get("resourceSpans", []):
                    for s in r.get("scopeSpans", []):
                        names.extend(x["name"] for x in s.get("spans", []))
    return names


def test_receiver_killed_three_times_mid_stream_loses_nothing(kafka, sightline_factory):
    """kill -9 of the consuming Sightline three times while it reads and exports over OTLP to a
    sink (a second Sightline writing files, never killed): every span produced reaches the
    sink, duplicates counted, none lost; offsets are committed only for what the sink
    acknowledged."""
    import time

    kafka.create_topic("kill9", partitions=2)
    sink = sightline_factory()
    exporter = f"""
  otlp/sink:
    endpoint: 127.0.0.1:{sink.grpc}
    tls: {{ insecure: true }}
    sending_queue: {{ batch: {{ flush_timeout: 100ms }} }}
"""
    total, per_msg = 0, 10
    kills = []

    def produce(n_msgs):
        nonlocal total
        values = []
        for _ in range(n_msgs):
            values.append(span_request([f"s-{total + i}" for i in range(per_msg)]))
            total += per_msg
        kafka.produce("kill9", values)

    # Four messages at a time: a round of 1,500 lasts a few seconds, so every kill lands
    # mid-stream (checked below).
    receiver = kafka_receiver(kafka, "kill9", "kill9-group", "    autocommit: { interval: 100ms }\n    max_in_flight: 4\n")
    start = dict(extra_receivers=receiver, pipeline_receivers="[kafka]", exporters=exporter, pipeline_exporters="[otlp/sink]")
    def accepted() -> int:
        import re

        m = re.search(r'otelcol_receiver_accepted_spans\{receiver="otlp",transport="grpc"\} (\d+)', sink.metrics())
        return int(m.group(1)) if m else 0

    for _ in range(3):
        produce(1500)
        before = accepted()
        sl = sightline_factory(**start)
        # Kill once a fifth of the round has reached the sink: mid-stream.
        assert wait_until(lambda: accepted() >= before + 3000, 60)
        sl.proc.kill()  # SIGKILL: no flush, no commit on the way out
        sl.proc.wait()
        got = set(spans_in_files([sink.tmp]))
        assert len(got) < total, f"the kill came after the stream had ended ({len(got)} of {total})"
        kills.append(len(got))
    produce(200)
    sl = sightline_factory(**start)
    want = {f"s-{i}" for i in range(total)}
    assert wait_until(lambda: want <= set(spans_in_files([sink.tmp])), 90), (
        len(want - set(spans_in_files([sink.tmp]))),
        (sl.tmp / "stderr.log").read_text()[-2000:],
    )
    names = spans_in_files([sink.tmp])
    duplicates = len(names) - len(set(names))
    print(f"kill -9 x3 (delivered before each: {kills}): {total} spans produced, {len(names)} delivered, {duplicates} duplicates, 0 lost")
    assert set(names) == want


def test_receiver_behind_a_disk_queue_survives_a_sink_outage_and_a_kill(kafka, sightline_factory, tmp_path):
    """The sink is down for a while: the consumer's disk queue takes the messages (their
    offsets are committed once it holds them), the consumer is killed with -9 while the sink is
    still down, started again, and once the sink is back every span reaches it."""
    import time

    kafka.create_topic("outage", partitions=2)
    sink = sightline_factory()
    ports = (sink.grpc, sink.http, sink.admin)
    queue = tmp_path / "queue"
    exporter = f"""
  otlp/sink:
    endpoint: 127.0.0.1:{sink.grpc}
    tls: {{ insecure: true }}
    sending_queue: {{ storage: disk, directory: "{queue}", batch: {{ flush_timeout: 20ms }} }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0s }}
"""
    start = dict(
        extra_receivers=kafka_receiver(kafka, "outage", "outage-group", "    autocommit: { interval: 100ms }\n"),
        pipeline_receivers="[kafka]",
        exporters=exporter,
        pipeline_exporters="[otlp/sink]",
    )
    kafka.produce("outage", [span_request([f"a-{i}-{j}" for j in range(10)]) for i in range(200)])
    consumer = sightline_factory(**start)
    assert wait_until(lambda: len(set(spans_in_files([sink.tmp]))) == 2000, 60)
    sink.stop()  # the sink goes down
    kafka.produce("outage", [span_request([f"b-{i}-{j}" for j in range(10)]) for i in range(300)])
    # Consumed into the disk queue while the sink is down.
    assert wait_until(lambda: 'sightline_kafka_receiver_messages_total{receiver="kafka",signal="traces"} 500' in consumer.metrics(), 60)
    time.sleep(0.5)  # one autocommit interval and more
    consumer.proc.kill()
    consumer.proc.wait()
    consumer = sightline_factory(**start)  # the same disk queue directory
    sink2 = sightline_factory(ports=ports)
    want = {f"{p}-{i}-{j}" for p, n in (("a", 200), ("b", 300)) for i in range(n) for j in range(10)}
    assert wait_until(lambda: want <= set(spans_in_files([sink.tmp, sink2.tmp])), 90), (
        len(want - set(spans_in_files([sink.tmp, sink2.tmp]))),
        (consumer.tmp / "stderr.log").read_text()[-2000:],
    )
    # The offsets were committed once the disk queue held the messages: the new consumer read
    # nothing again; what reached the sink came from the disk queue.
    assert 'sightline_kafka_receiver_messages_total{receiver="kafka",signal="traces"} 0' in consumer.metrics()


def test_corrupt_and_oversized_messages_are_counted_and_skipped(kafka, sightline_factory):
    # A small memory budget (memory_limiter limit_mib 32: about 12 MiB for requests) so that
    # a 16 MB message is larger than the budget.
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    admin = kafka.admin()
    admin.create_topics([NewTopic("poison", 1, 1, config={"max.message.bytes": "20000000"})])["poison"].result(30)
    p = Producer({"bootstrap.servers": kafka.bootstrap, "message.max.bytes": 20_000_000})
    big = span_request(["big"] * 1) + span_request(["x" * 1000] * 16_000)
    assert len(big) > 16_000_000
    for v in (span_request(["before"]), b"\xff\xff\xff not protobuf", big, b"", span_request(["after"])):
        p.produce("poison", value=v)
    assert p.flush(30) == 0
    sl = sightline_factory(
        extra_receivers=kafka_receiver(
            kafka, "poison", "poison-group", "    max_fetch_size: 52428800\n    max_partition_fetch_size: 52428800\n"
        ),
        pipeline_receivers="[kafka]",
        extra_processors="  memory_limiter: { check_interval: 1s, limit_mib: 32, spike_limit_mib: 8 }\n",
    )
    assert wait_until(lambda: {"before", "after"} <= set(spans_in_files([sl.tmp])), 60), (sl.tmp / "stderr.log").read_text()[-3000:]
    m = sl.metrics()
    assert 'sightline_kafka_receiver_invalid_messages_total{receiver="kafka",signal="traces"} 1' in m, m
    assert 'sightline_kafka_receiver_oversized_messages_total{receiver="kafka",signal="traces"} 1' in m, m
    stderr = (sl.tmp / "stderr.log").read_text()
    assert "poison" in stderr and "offset" in stderr, stderr[-2000:]
    assert "big" not in set(spans_in_files([sl.tmp]))


def test_sasl_and_tls_to_a_secured_broker_both_ways(kafka, sightline_factory):
    """The broker's secured listeners (peer_kafka.Kafka(secure=True)): SASL/PLAIN and
    SCRAM-SHA-256 over plaintext, mutual TLS, and SCRAM-SHA-512 over TLS. One Sightline exports
    the same spans through a kafka exporter per listener, each to its own topic; a second
    Sightline reads every topic with a kafka receiver configured the same way. Every listener
    carries every span both ways; an exporter with a wrong password is named in the log and
    delivers nothing."""
    import re

    pki = kafka.pki
    users = Kafka.USERS

    def sasl(mech):
        user, pw = users[mech]
        return f"auth: {{ sasl: {{ mechanism: {mech}, username: {user}, password: {pw} }} }}"

    modes = {
        "plain": (kafka.sasl_bootstrap, sasl("PLAIN")),
        "scram256": (kafka.sasl_bootstrap, sasl("SCRAM-SHA-256")),
        "mtls": (kafka.ssl_bootstrap,
                 f"tls: {{ ca_file: {pki}/ca.pem, cert_file: {pki}/client.pem, key_file: {pki}/client-key.pem }}"),
        "scram512tls": (kafka.sasl_ssl_bootstrap, sasl("SCRAM-SHA-512") + f"\n    tls: {{ ca_file: {pki}/ca.pem }}"),
        # No retries: its batches fail at once, so stopping the exporter does not wait on them.
        "badpass": (kafka.sasl_bootstrap, "auth: { sasl: { mechanism: PLAIN, username: alice, password: wrong } }\n    retry_on_failure: { enabled: false }"),
    }
    exporters = "".join(
        f"""  kafka/{m}:
    brokers: ["{b}"]
    {sec}
    traces: {{ topic: secured-{m} }}
    timeout: 5s
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
"""
        for m, (b, sec) in modes.items()
    )
    good = [m for m in modes if m != "badpass"]
    producer = sightline_factory(
        exporters=exporters + DEFAULT_EXPORTERS.format(tmp="@TMP@"),
        pipeline_exporters={"traces": "[" + ", ".join(f"kafka/{m}" for m in modes) + "]"},
    )
    receivers = "".join(
        f"""  kafka/{m}:
    brokers: ["{modes[m][0]}"]
    {modes[m][1]}
    group_id: secured-{m}
    initial_offset: earliest
    traces: {{ topics: [secured-{m}] }}
"""
        for m in good
    )
    consumer = sightline_factory(extra_receivers=receivers, pipeline_receivers="[" + ", ".join(f"kafka/{m}" for m in good) + "]")
    send_traces(producer.grpc, 12, service="secured")
    want = [f"root-{i}" for i in range(12)]

    def accepted(m):
        x = re.search(rf'otelcol_receiver_accepted_spans{{receiver="kafka/{m}",transport="kafka"}} (\d+)', consumer.metrics())
        return int(x.group(1)) if x else 0

    assert wait_until(lambda: all(accepted(m) >= 12 for m in good), 60), (
        {m: accepted(m) for m in good},
        (producer.tmp / "stderr.log").read_text()[-3000:],
        (consumer.tmp / "stderr.log").read_text()[-3000:],
    )
    names = spans_in_files([consumer.tmp])
    assert sorted(names) == sorted(want * len(good)), names
    pm = producer.metrics()
    for m in good:
        assert re.search(rf'sightline_kafka_exporter_records_total{{exporter="kafka/{m}"}} [1-9]', pm), pm
    stderr = (producer.tmp / "stderr.log").read_text()
    assert wait_until(lambda: "kafka/badpass" in (producer.tmp / "stderr.log").read_text()
                      and "Authentication failed" in (producer.tmp / "stderr.log").read_text(), 30), stderr[-3000:]
    assert not re.search(r'sightline_kafka_exporter_records_total{exporter="kafka/badpass"} [1-9]', pm)


def test_two_consumers_in_one_group_share_partitions_and_hand_over_without_loss(kafka, sightline_factory):
    """Two Sightline consumers in one group on a four-partition topic: the second one's join
    splits the partitions between them (both deliver), then the first stops and the second
    takes every partition over. Every span produced reaches the sink; duplicates are counted."""
    import re

    kafka.create_topic("rebalance", partitions=4)
    sink = sightline_factory()
    exporter = f"""
  otlp/sink:
    endpoint: 127.0.0.1:{sink.grpc}
    tls: {{ insecure: true }}
    sending_queue: {{ batch: {{ flush_timeout: 100ms }} }}
"""
    receiver = kafka_receiver(kafka, "rebalance", "rebalance-group", "    autocommit: { interval: 100ms }\n")
    start = dict(extra_receivers=receiver, pipeline_receivers="[kafka]", exporters=exporter, pipeline_exporters="[otlp/sink]")
    total = 0

    def produce(n):
        nonlocal total
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": kafka.bootstrap, "partitioner": "consistent_random"})
        for _ in range(n):
            # Keys spread the messages over the four partitions.
            p.produce("rebalance", key=str(total).encode(), value=span_request([f"r-{total + i}" for i in range(5)]))
            total += 5
        assert p.flush(30) == 0

    def accepted(sl) -> int:
        x = re.search(r'otelcol_receiver_accepted_spans{receiver="kafka",transport="kafka"} (\d+)', sl.metrics())
        return int(x.group(1)) if x else 0

    def delivered() -> set:
        return set(spans_in_files([sink.tmp]))

    a = sightline_factory(**start)
    produce(40)
    assert wait_until(lambda: len(delivered()) == total, 60)
    b = sightline_factory(**start)
    # The join: B is assigned partitions once A's consumer has given some up.
    assert wait_until(lambda: "rebalance Assign" in (b.tmp / "stderr.log").read_text() or accepted(b) > 0, 60)
    before_a, before_b = accepted(a), accepted(b)
    assert wait_until(lambda: (produce(20), accepted(a) > before_a and accepted(b) > before_b)[1], 60, interval=1.0), (
        accepted(a), accepted(b), (b.tmp / "stderr.log").read_text()[-2000:])
    a.stop()
    before_b = accepted(b)
    produce(60)
    want = {f"r-{i}" for i in range(total)}
    assert wait_until(lambda: want <= delivered(), 60), (len(want - delivered()), (b.tmp / "stderr.log").read_text()[-2000:])
    # After A left, B alone read everything produced since (all four partitions). The
    # receiver counts a message once its exporters delivered it, a moment after the sink has it.
    assert wait_until(lambda: accepted(b) - before_b >= 300, 10), (accepted(b), before_b)
    names = spans_in_files([sink.tmp])
    print(f"rebalance: {total} spans produced, {len(names)} delivered, {len(names) - len(set(names))} duplicates, 0 lost")


def test_regex_topics_with_exclusions_match_the_collector(kafka, sightline_factory, tmp_path):
    """Differential, through the real collector (contrib v0.165.1 kafkareceiver, franz-go's
    regex mode): both read `topics: ["^rxt-team-", "audit"]` with `exclude_topics: ["-test$"]`
    from the same topics and must read the same spans: the ^-anchored and the unanchored
    expression match, the excluded and the unmatched topics are not read, and a topic created
    while both run is picked up at a metadata refresh."""
    for t in ("rxt-team-a", "rxt-team-b", "rxt-team-b-test", "rxt-other", "x-audit-1", "rxt-col-out"):
        kafka.create_topic(t)
    for topic, name in (("rxt-team-a", "a1"), ("rxt-team-b", "b1"), ("rxt-team-b-test", "t1"), ("rxt-other", "o1"), ("x-audit-1", "u1")):
        kafka.produce(topic, [span_request([name])])
    signal_cfg = """    traces: { topics: ["^rxt-team-", "audit"], exclude_topics: ["-test$"] }
    metadata: { refresh_interval: 5s }
"""
    sl = sightline_factory(extra_receivers=kafka_receiver(kafka, "unused", "rxt-sightline").replace(
        "    traces: { topics: [unused] }\n", signal_cfg), pipeline_receivers="[kafka]")
    components = f"""
receivers:
  kafka:
    brokers: ["{kafka.bootstrap}"]
    initial_offset: earliest
    group_id: rxt-collector
{signal_cfg}
exporters:
  kafka:
    brokers: ["{kafka.bootstrap}"]
    traces: {{ topic: rxt-col-out }}
"""

    def collector_spans():
        return sorted(n for m in kafka.consume("rxt-col-out", 100, timeout=1) for n in (x.name for x in spans_of(decode("traces", m.value(), "otlp_proto"))))

    want = ["a1", "b1", "u1"]
    with collector(tmp_path, components, {"traces": "{ receivers: [kafka], exporters: [kafka] }"}) as log_path:
        assert wait_until(lambda: sorted(spans_in_files([sl.tmp])) == want, 60), (
            spans_in_files([sl.tmp]),
            (sl.tmp / "stderr.log").read_text()[-3000:],
        )
        assert wait_until(lambda: collector_spans() == want, 60), (collector_spans(), log_path.read_text()[-3000:])
        # A topic created while both run: read from its start once a refresh lists it.
        kafka.create_topic("rxt-team-c")
        kafka.produce("rxt-team-c", [span_request(["c1"])])
        kafka.produce("rxt-team-b-test", [span_request(["t2"])])
        want = ["a1", "b1", "c1", "u1"]
        assert wait_until(lambda: sorted(spans_in_files([sl.tmp])) == want, 60), spans_in_files([sl.tmp])
        assert wait_until(lambda: collector_spans() == want, 60), (collector_spans(), log_path.read_text()[-3000:])
    assert sorted(spans_in_files([sl.tmp])) == collector_spans() == want
    assert "subscribed to the topics that match" in (sl.tmp / "stderr.log").read_text()


def test_exclude_topics_mistakes_are_named(tmp_path):
    cfg = tmp_path / "bad.yaml"
    for signal_cfg, key in (
        ('traces: { topics: [otlp_spans], exclude_topics: ["x"] }', "traces.exclude_topics"),
        ('traces: { topics: ["^a"], exclude_topics: ["("] }', "traces.exclude_topics.0"),
        ('traces: { topics: ["^a", "("] }', "traces.topics.1"),
        ('traces: { topics: ["^a"], exclude_topics: [""] }', "traces.exclude_topics.0"),
    ):
        cfg.write_text(f"""
receivers:
  kafka:
    {signal_cfg}
exporters: {{ debug: {{}} }}
service:
  pipelines: {{ traces: {{ receivers: [kafka], exporters: [debug] }} }}
""")
        out = subprocess.run([os.environ["SIGHTLINE_BIN"], "validate", "--config", str(cfg)], capture_output=True, text=True)
        assert out.returncode == 1, (signal_cfg, out.stdout)
        assert f"receivers.kafka.{key}" in out.stdout + out.stderr, (signal_cfg, out.stdout + out.stderr)
