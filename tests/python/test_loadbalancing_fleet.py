"""Agents and gateways with the Python SDK as the client: two Sightline agents whose
`loadbalancing` exporter spreads traces over three Sightline gateways (all the real binary on
loopback), each gateway writing what it receives to its own file. Every trace has a span sent
through each agent (a parent in one service, its child in another), so a trace stays at one
gateway only if both agents route it the same way. (The Rust SDK, the fourth gateway and the
gateway killed mid-stream are in crates/sightline/tests/loadbalancing.rs.)"""

import json
import os
import subprocess

import pytest
from conftest import admin_ready, complete_lines, free_port, stop_process, wait_until
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

TRACES = 120


class Proc:
    def __init__(self, tmp, name, config):
        self.tmp = tmp / name
        self.tmp.mkdir()
        self.grpc, self.admin = free_port(), free_port()
        cfg = self.tmp / "sightline.yaml"
        cfg.write_text(config.format(grpc=self.grpc, admin=self.admin, dir=self.tmp))
        self.log = open(self.tmp / "stderr.log", "w")
        self.proc = subprocess.Popen([os.environ["SIGHTLINE_BIN"], "run", "--config", str(cfg)], stderr=self.log)
        assert wait_until(lambda: admin_ready(self.admin) or self.proc.poll() is not None, 30)
        assert self.proc.poll() is None, (self.tmp / "stderr.log").read_text()

    def stop(self):
        stop_process(self.proc, self.log)


GATEWAY = """
receivers: {{ otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }} }}
exporters:
  file: {{ path: "{dir}/traces.jsonl", sending_queue: {{ batch: {{ flush_timeout: 20ms }} }} }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{admin}" }} }}
  pipelines: {{ traces: {{ receivers: [otlp], exporters: [file] }} }}
"""

AGENT = """
receivers: {{ otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }} }}
exporters:
  loadbalancing:
    protocol: {{ otlp: {{ tls: {{ insecure: true }} }} }}
    resolver: {{ static: {{ hostnames: [HOSTS] }} }}
    sending_queue: {{ batch: {{ flush_timeout: 20ms }} }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{admin}" }} }}
  pipelines: {{ traces: {{ receivers: [otlp], exporters: [loadbalancing] }} }}
"""


@pytest.fixture
def fleet(tmp_path):
    if "SIGHTLINE_BIN" not in os.environ:
        pytest.fail("SIGHTLINE_BIN must point at the sightline binary (scripts/test.sh sets it)")
    started = []
    try:
        gateways = [Proc(tmp_path, f"gateway{i}", GATEWAY) for i in range(3)]
        started += gateways
        hosts = ", ".join(f'"127.0.0.1:{g.grpc}"' for g in gateways)
        agents = [Proc(tmp_path, f"agent{i}", AGENT.replace("HOSTS", hosts)) for i in range(2)]
        started += agents
        yield gateways, agents
    finally:
        for p in started:
            p.stop()


def trace_ids(gateway):
    """trace id -> spans the gateway wrote."""
    out = {}
    path = gateway.tmp / "traces.jsonl"
    if not path.exists():
        return out
    for line in complete_lines(path):
        for rs in json.loads(line).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    out.setdefault(s["traceId"], []).append(s["name"])
    return out


def test_python_sdk_traces_through_two_agents_stay_at_one_gateway(fleet):
    gateways, agents = fleet
    providers = []
    for agent, service in zip(agents, ("frontend", "cart")):
        p = TracerProvider(resource=Resource.create({"service.name": service}))
        p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{agent.grpc}", insecure=True)))
        providers.append(p)
    front, back = providers[0].get_tracer("front"), providers[1].get_tracer("back")
    for i in range(TRACES):
        with front.start_as_current_span(f"front-{i}") as parent:
            # The child is made by the other service (its own SDK), as after a remote call.
            ctx = trace.set_span_in_context(trace.NonRecordingSpan(parent.get_span_context()))
            with back.start_as_current_span(f"back-{i}", context=ctx):
                pass
    for p in providers:
        assert p.force_flush(10_000)

    def arrived():
        return sum(len(v) for g in gateways for v in trace_ids(g).values()) >= 2 * TRACES

    assert wait_until(arrived, 30)
    per_gateway = [trace_ids(g) for g in gateways]
    everywhere = {}
    for g, ids in enumerate(per_gateway):
        for t, names in ids.items():
            everywhere.setdefault(t, []).append((g, sorted(names)))
    assert len(everywhere) == TRACES
    split = {t: where for t, where in everywhere.items() if len(where) != 1}
    assert not split, f"{len(split)} traces split over gateways, e.g. {list(split.items())[:2]}"
    assert all(len(where[0][1]) == 2 for where in everywhere.values()), "both spans of each trace"
    assert all(len(ids) > 10 for ids in per_gateway), [len(ids) for ids in per_gateway]
    for p in providers:
        p.shutdown()
