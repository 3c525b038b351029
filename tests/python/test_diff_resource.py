"""Differential tests of the `resource` processor: the same config and the same requests of all
three signals through the real collector (contrib resourceprocessor v0.165.1, in
tests/peers/otelcol) and through Sightline, each exporting OTLP/JSON over HTTP to a capture
server in this test; the resources' attributes are compared field by field. Invalid configs:
both must refuse them (`validate`)."""

import copy
import json
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port, wait_until
from peers import ROOT, peer_binary

RESOURCE_ATTRS = [
    {"key": "service.name", "value": {"stringValue": "checkout"}},
    {"key": "env", "value": {"stringValue": "staging"}},
    {"key": "port", "value": {"stringValue": "8080"}},
    {"key": "count", "value": {"intValue": "3"}},
    {"key": "ratio", "value": {"doubleValue": 0.25}},
    {"key": "big", "value": {"doubleValue": 1e21}},
    {"key": "flag", "value": {"boolValue": True}},
    {"key": "url", "value": {"stringValue": "https://shop.example.com/cart?id=7"}},
    {"key": "tmp.a", "value": {"stringValue": "x"}},
    {"key": "tmp.b", "value": {"intValue": "1"}},
    {"key": "user.email", "value": {"stringValue": "alice@example.com"}},
    {"key": "blank", "value": {"stringValue": ""}},
    {"key": "raw", "value": {"bytesValue": "AQI="}},
    {"key": "list", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}},
    {"key": "map", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": False}}]}}},
    {"key": "badnum", "value": {"stringValue": "12a"}},
    {"key": "fnum", "value": {"stringValue": "2.5"}},
]


def requests_for(signal):
    """Two resources per request: the rich one above and one without attributes."""
    resources = [{"attributes": copy.deepcopy(RESOURCE_ATTRS)}, {}]
    if signal == "traces":
        item = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "op",
                "kind": 2, "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000000001000"}
        return {"resourceSpans": [{"resource": r, "scopeSpans": [{"spans": [item]}]} for r in resources]}
    if signal == "logs":
        item = {"timeUnixNano": "1700000000000000000", "body": {"stringValue": "hello"}}
        return {"resourceLogs": [{"resource": r, "scopeLogs": [{"logRecords": [item]}]} for r in resources]}
    item = {"name": "requests", "sum": {"aggregationTemporality": 2, "isMonotonic": True,
                                        "dataPoints": [{"asInt": "5", "timeUnixNano": "1700000000000000000"}]}}
    return {"resourceMetrics": [{"resource": r, "scopeMetrics": [{"metrics": [item]}]} for r in resources]}


class Capture:
    """An OTLP/HTTP JSON endpoint that keeps every request body, per path."""

    def __init__(self):
        self.bodies = {}
        lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                with lock:
                    outer.bodies.setdefault(self.path, []).append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def config(otlp_http, admin, capture_port, actions):
    return f"""
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{otlp_http}" }}
processors:
  resource:
    attributes: {json.dumps(actions)}
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{capture_port}
    encoding: json
    compression: none
service:
  telemetry:
    metrics:
      readers:
        - pull: {{ exporter: {{ prometheus: {{ host: 127.0.0.1, port: {admin} }} }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [resource], exporters: [otlphttp] }}
    logs: {{ receivers: [otlp], processors: [resource], exporters: [otlphttp] }}
    metrics: {{ receivers: [otlp], processors: [resource], exporters: [otlphttp] }}
"""


def post(port, signal, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/{signal}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def normalise_value(v):
    """An OTLP/JSON AnyValue with ints as ints and doubles as floats (encoders differ in how
    they write numbers, not in what they mean)."""
    if "intValue" in v:
        return {"int": int(v["intValue"])}
    if "doubleValue" in v:
        return {"double": float(v["doubleValue"])}
    if "arrayValue" in v:
        return {"array": [normalise_value(x) for x in v["arrayValue"].get("values", [])]}
    if "kvlistValue" in v:
        # Sorted: the collector builds a map value from a YAML map by iterating a Go map, so
        # its order differs from run to run (seen: tier before team, then team before tier).
        return {"kvlist": sorted((kv["key"], normalise_value(kv.get("value", {})))
                                 for kv in v["kvlistValue"].get("values", []))}
    return v


def resources(bodies, signal):
    key = {"traces": "resourceSpans", "logs": "resourceLogs", "metrics": "resourceMetrics"}[signal]
    out = []
    for b in bodies:
        for r in b.get(key, []):
            attrs = r.get("resource", {}).get("attributes", [])
            out.append([(a["key"], normalise_value(a.get("value", {}))) for a in attrs])
    return out


def run_system(name, tmp_path, actions):
    binary = {"otelcol": peer_binary("otelcol", "OTELCOL_BIN", ROOT / ".peers/otelcol"),
              "sightline": peer_binary("sightline", "SIGHTLINE_BIN", ROOT / "target/release/sightline")}[name]
    capture = Capture()
    port, admin = free_port(), free_port()
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(config(port, admin, capture.port, actions))
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
        assert wait_until(up, 30), (tmp_path / f"{name}.log").read_text()[-3000:]
        out = {}
        for signal in ("traces", "logs", "metrics"):
            post(port, signal, requests_for(signal))
            assert wait_until(lambda: capture.bodies.get(f"/v1/{signal}"), 20), f"{name}: no {signal} exported"
            out[signal] = resources(capture.bodies[f"/v1/{signal}"], signal)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        capture.close()


CASES = {
    "insert_update_upsert_scalars": [
        {"key": "env", "value": "prod", "action": "insert"},
        {"key": "new.str", "value": "v", "action": "insert"},
        {"key": "new.int", "value": 42, "action": "insert"},
        {"key": "new.double", "value": 1.5, "action": "upsert"},
        {"key": "new.bool", "value": False, "action": "upsert"},
        {"key": "env", "value": "dev", "action": "update"},
        {"key": "missing", "value": "x", "action": "update"},
        {"key": "count", "value": "three", "action": "upsert"},
    ],
    "from_attribute_and_default_value": [
        {"key": "copy.url", "from_attribute": "url", "action": "insert"},
        {"key": "env", "from_attribute": "service.name", "action": "update"},
        {"key": "copy.count", "from_attribute": "count", "action": "upsert"},
        {"key": "copy.missing", "from_attribute": "nope", "action": "upsert"},
        {"key": "dflt", "from_attribute": "nope", "default_value": "fallback", "action": "insert"},
        {"key": "copy.list", "from_attribute": "list", "action": "upsert"},
    ],
    "delete_by_key_and_pattern": [
        {"key": "user.email", "action": "delete"},
        {"pattern": "^tmp\\.", "action": "delete"},
        {"key": "flag", "pattern": "^ma", "action": "delete"},
        {"key": "not.there", "action": "delete"},
    ],
    "hash_every_type": [
        {"key": "user.email", "action": "hash"},
        {"key": "count", "action": "hash"},
        {"key": "ratio", "action": "hash"},
        {"key": "flag", "action": "hash"},
        {"key": "raw", "action": "hash"},
        {"key": "list", "action": "hash"},
        {"pattern": "^tmp\\.", "action": "hash"},
    ],
    "extract_named_groups": [
        {"key": "url", "pattern": "^(?P<url_scheme>\\w+)://(?P<url_host>[^/]+)(?P<url_path>/[^?]*)", "action": "extract"},
        {"key": "env", "pattern": "^(?P<never>prod)$", "action": "extract"},
        {"key": "count", "pattern": "^(?P<digits>\\d+)$", "action": "extract"},
    ],
    "convert_to_int": [
        {"key": "port", "converted_type": "int", "action": "convert"},
        {"key": "ratio", "converted_type": "int", "action": "convert"},
        {"key": "flag", "converted_type": "int", "action": "convert"},
        {"key": "badnum", "converted_type": "int", "action": "convert"},
        {"key": "list", "converted_type": "int", "action": "convert"},
    ],
    "convert_to_double_and_string": [
        {"key": "count", "converted_type": "double", "action": "convert"},
        {"key": "fnum", "converted_type": "double", "action": "convert"},
        {"key": "flag", "converted_type": "double", "action": "convert"},
        {"key": "tmp.b", "converted_type": "string", "action": "convert"},
        {"key": "ratio", "converted_type": "string", "action": "convert"},
        {"key": "big", "converted_type": "string", "action": "convert"},
        {"key": "raw", "converted_type": "string", "action": "convert"},
        {"key": "list", "converted_type": "string", "action": "convert"},
        {"key": "map", "converted_type": "string", "action": "convert"},
    ],
    "list_and_map_values": [
        {"key": "tags", "value": ["a", 1, 2.5, True], "action": "insert"},
        {"key": "meta", "value": {"team": "payments", "tier": 1}, "action": "upsert"},
    ],
    "sequence_and_case": [
        {"key": "owner", "value": "payments", "action": "UPSERT"},
        {"key": "owner.copy", "from_attribute": "owner", "action": "Insert"},
        {"key": "owner", "action": "hash"},
        {"key": "owner.copy", "converted_type": "string", "action": "convert"},
        {"key": "owner.copy", "action": "delete"},
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_resource_processor_matches_the_collector(case, tmp_path):
    collector = run_system("otelcol", tmp_path, CASES[case])
    sightline = run_system("sightline", tmp_path, CASES[case])
    for signal in ("traces", "logs", "metrics"):
        assert sightline[signal] == collector[signal], f"{case}/{signal}"
    # The case did something (a test whose actions all miss proves nothing).
    original = [(a["key"], normalise_value(a["value"])) for a in RESOURCE_ATTRS]
    assert collector["traces"][0] != original, case


INVALID = {
    "no_actions": [],
    "insert_without_value": [{"key": "a", "action": "insert"}],
    "two_sources": [{"key": "a", "value": "x", "from_attribute": "b", "action": "upsert"}],
    "extract_unnamed_group": [{"key": "a", "pattern": "(\\w+)", "action": "extract"}],
    # Go's regexp allows only word characters in group names; Rust's regex also allows dots.
    "extract_dotted_group_name": [{"key": "a", "pattern": "(?P<url.host>\\w+)", "action": "extract"}],
    "convert_bad_type": [{"key": "a", "converted_type": "bool", "action": "convert"}],
    "unknown_action": [{"key": "a", "action": "rename"}],
    "delete_without_key_or_pattern": [{"action": "delete"}],
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_both_refuse_the_same_invalid_configs(case, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(config(free_port(), free_port(), free_port(), INVALID[case]))
    otelcol = peer_binary("otelcol", "OTELCOL_BIN", ROOT / ".peers/otelcol")
    sightline = peer_binary("sightline", "SIGHTLINE_BIN", ROOT / "target/release/sightline")
    c = subprocess.run([otelcol, "validate", "--config", str(cfg)], capture_output=True, text=True)
    s = subprocess.run([sightline, "validate", "--config", str(cfg)], capture_output=True, text=True)
    assert c.returncode != 0, c.stdout + c.stderr
    assert s.returncode != 0 and "processors.resource.attributes" in s.stderr, s.stderr
