"""The `health_check` extension, differentially: the same extension config through the real
collector (contrib healthcheckextension v0.165.1, built into tests/peers/otelcol) and through
Sightline, the answers compared field by field (status code, JSON keys and values, body)."""

import json
import re
import subprocess
import urllib.error
import urllib.request


from conftest import free_port, wait_until
from peers import ROOT, peer_binary

OTELCOL = ROOT / ".peers" / "otelcol"


def get(url):
    """(status, content type, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()
    except OSError:
        return None, "", ""


def config(otlp_port, admin_port, health):
    return f"""
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{otlp_port}" }}
exporters:
  debug: {{}}
extensions:
  health_check:
{health}
service:
  extensions: [health_check]
  telemetry:
    metrics:
      readers:
        - pull: {{ exporter: {{ prometheus: {{ host: 127.0.0.1, port: {admin_port} }} }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [debug] }}
"""


def run(binary, args, tmp_path, name, health, probes):
    """Starts `binary` with the health check config, waits for it to answer 200 at the first
    probe, and returns every probe's answer."""
    port = free_port()
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(config(free_port(), free_port(), health.format(port=port)))
    log = open(tmp_path / f"{name}.log", "w")
    proc = subprocess.Popen([binary, *args, "--config", str(cfg)], stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: get(base + probes[0])[0] == 200, 30), (tmp_path / f"{name}.log").read_text()[-3000:]
        return [get(base + p) for p in probes]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def both(tmp_path, health, probes):
    otelcol = peer_binary("otelcol", "OTELCOL_BIN", OTELCOL)
    sightline = peer_binary("sightline", "SIGHTLINE_BIN", ROOT / "target/release/sightline")
    return (run(otelcol, [], tmp_path, "otelcol", health, probes),
            run(sightline, ["run"], tmp_path, "sightline", health, probes))


UPTIME = re.compile(r"^(\d+h)?(\d+m)?\d+(\.\d+)?(s|ms|µs|ns)$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def test_default_answer_matches_the_collector(tmp_path):
    health = "    endpoint: 127.0.0.1:{port}\n"
    # The default path is "/", which (a Go ServeMux pattern) answers every path under it.
    collector, sightline = both(tmp_path, health, ["/", "/anything/below"])
    for (c_code, c_type, c_body), (s_code, s_type, s_body) in zip(collector, sightline):
        assert (s_code, s_type.split(";")[0]) == (c_code, c_type.split(";")[0]) == (200, "application/json")
        c, s = json.loads(c_body), json.loads(s_body)
        assert sorted(s) == sorted(c) == ["status", "upSince", "uptime"]
        assert s["status"] == c["status"] == "Server available"
        assert RFC3339.match(c["upSince"]) and RFC3339.match(s["upSince"]), (c, s)
        assert UPTIME.match(c["uptime"]) and UPTIME.match(s["uptime"]), (c, s)


def test_path_and_response_body_match_the_collector(tmp_path):
    health = ("    endpoint: 127.0.0.1:{port}\n    path: /health/status\n"
              "    response_body: {{ healthy: I'm OK, unhealthy: I'm not well }}\n"
              "    check_collector_pipeline: {{ enabled: false }}\n")
    collector, sightline = both(tmp_path, health, ["/health/status", "/health", "/other"])
    assert [(code, body) for code, _, body in sightline] == [(code, body) for code, _, body in collector]
    # Go writes text/plain for both the configured body and its 404 page.
    assert [t.split(";")[0] for _, t, _ in sightline] == [t.split(";")[0] for _, t, _ in collector]
    assert collector[0] == (200, collector[0][1], "I'm OK")
    assert [code for code, _, _ in collector[1:]] == [404, 404]


def test_unknown_extension_names_the_supported_ones(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("""
receivers: { otlp: { protocols: { grpc: { endpoint: "127.0.0.1:0" } } } }
exporters: { debug: {} }
extensions: { pprof: { endpoint: "localhost:1777" } }
service:
  extensions: [pprof]
  pipelines: { traces: { receivers: [otlp], exporters: [debug] } }
""")
    binary = peer_binary("sightline", "SIGHTLINE_BIN", ROOT / "target/release/sightline")
    r = subprocess.run([binary, "validate", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 1
    assert 'unknown extension type "pprof"' in r.stderr and "available: health_check" in r.stderr, r.stderr
