"""The governance view: /status.json after real Python SDK traffic (two teams, one enforcing
and one observing, two services nobody owns, a metric past its series limit), and /status as
headless Chromium renders it (Debian's `chromium`, installed by scripts/test.sh): the tables
hold the same numbers. A broken catalog file shows up as a failed reload with its file:line.
The screenshot is written to the test's directory, and to docs/status.png when
SIGHTLINE_UPDATE_DOCS=1."""

import json
import os
import shutil
import subprocess
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import CATALOG, free_port, wait_until
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

CHROMIUM = shutil.which("chromium")
REPO = Path(__file__).resolve().parents[2]


class Tables(HTMLParser):
    """{table id: [[cell text]]} of a page."""

    def __init__(self):
        super().__init__()
        self.tables, self.current, self.row, self.cell = {}, None, None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.current = dict(attrs).get("id")
            self.tables[self.current] = []
        elif tag == "tr" and self.current:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.tables[self.current].append(self.row)
            self.row = None
        elif tag == "table":
            self.current = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def spans(http, service, n, attrs=None):
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{http}/v1/traces")))
    for i in range(n):
        with tp.get_tracer("status").start_as_current_span(f"op {i}") as s:
            for k, v in (attrs or {}).items():
                s.set_attribute(k, v)
    tp.shutdown()


def get(admin, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}{path}", timeout=5) as r:
        return r.read().decode()


def ready(admin):
    try:
        return get(admin, "/readyz") == "ready\n"
    except OSError:
        return False


def test_the_governance_view(tmp_path):
    if CHROMIUM is None:
        pytest.fail("chromium is missing: scripts/test.sh installs Debian's package")
    http, admin = free_port(), free_port()
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "teams.yaml").write_text(CATALOG)
    cfg = tmp_path / "sightline.yaml"
    cfg.write_text(f"""
receivers:
  otlp: {{ protocols: {{ http: {{ endpoint: "127.0.0.1:{http}" }} }} }}
processors:
  ownership: {{ catalog: ["{tmp_path}/catalog"] }}
  policy:
    mode: observe
    cardinality: {{ max_series_per_metric: 10 }}
    teams: {{ payments: {{ mode: enforce }} }}
exporters:
  file: {{ path: "{tmp_path}/out.jsonl" }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{admin}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [ownership, policy], exporters: [file] }}
    metrics: {{ receivers: [otlp], processors: [ownership, policy], exporters: [file] }}
""")
    log = open(tmp_path / "stderr.log", "w")
    proc = subprocess.Popen([os.environ["SIGHTLINE_BIN"], "run", "--config", str(cfg)], stderr=log)
    try:
        assert wait_until(lambda: ready(admin) or proc.poll() is not None, 30)
        assert ready(admin), (tmp_path / "stderr.log").read_text()
        spans(http, "checkout", 4, {"card": "4111 1111 1111 1111"})  # payments, enforce: masked
        spans(http, "search-api", 3, {"mail": "alice@example.com"})  # search, observe
        spans(http, "legacy-batch", 5)  # nobody owns these two
        spans(http, "cron-job", 2)
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"http://127.0.0.1:{http}/v1/metrics"), export_interval_millis=600_000)
        mp = MeterProvider(resource=Resource.create({"service.name": "checkout"}), metric_readers=[reader])
        c = mp.get_meter("status").create_counter("logins")
        for u in range(30):
            c.add(1, {"user.id": f"u{u}"})
        assert mp.force_flush(10_000)
        mp.shutdown()

        def snap():
            return json.loads(get(admin, "/status.json"))

        assert wait_until(lambda: len(snap()["series"]) == 1, 15), snap()
        s = snap()
        teams = {t["team"]: t for t in s["teams"]}
        assert teams["payments"]["signals"]["traces"]["items"] == 4
        assert teams["search"]["signals"]["traces"]["items"] == 3
        assert teams["unowned"]["signals"]["traces"]["items"] == 7
        # The SDK exports its cumulative points twice (flush, then shutdown).
        assert teams["payments"]["signals"]["metrics"]["items"] in (30, 60)
        assert all(t["signals"]["traces"]["bytes"] > 0 for t in teams.values())
        assert teams["payments"]["policy_modes"] == [
            {"policy": "policy", "signal": "traces", "mode": "enforce"},
            {"policy": "policy", "signal": "metrics", "mode": "enforce"}]
        assert {m["mode"] for m in teams["search"]["policy_modes"]} == {"observe"}
        assert teams["payments"]["findings"]["masked"] == 4
        assert teams["search"]["findings"] == {"observed": 3}

        cov = s["coverage"]["by_signal"]["traces"]
        assert (cov["resources"], cov["unowned"]) == (14, 7), cov  # SimpleSpanProcessor: one span per request
        top = s["unowned_services"]["top"]
        assert [(u["service"], u["language"], u["items"]) for u in top] == [
            ("legacy-batch", "python", 5), ("cron-job", "python", 2)]
        assert top[0]["first_seen"] and top[0]["first_seen"] <= top[0]["last_seen"]

        f = {(x["team"], x["rule"], x["action"]): x["count"] for x in s["policy_findings"]}
        assert f[("payments", "credit_card", "masked")] == 4 and f[("search", "email", "observed")] == 3
        assert f[("payments", "series_limit", "dropped")] in (20, 40)
        series = s["series"][0]
        assert (series["team"], series["metric"], series["series"], series["top_attribute"]) == (
            "payments", "logins", 30, "user.id")
        cat = s["catalogs"][0]
        assert (cat["processor"], cat["ok"], cat["teams"], cat["services"], cat["rules"]) == (
            "ownership", True, 2, 1, 1)

        m = get(admin, "/metrics")
        assert 'sightline_ownership_coverage_ratio{signal="traces"} 0.5' in m
        assert "sightline_ownership_unowned_services 2" in m
        assert 'sightline_ownership_unowned_service_items{service="legacy-batch",language="python"} 5' in m

        # The page, as a browser renders it.
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                              f"http://127.0.0.1:{admin}/status"], capture_output=True, text=True, timeout=60)
        assert dom.returncode == 0, dom.stderr
        t = Tables()
        t.feed(dom.stdout)
        rows = {r[0]: r for r in t.tables["teams"][1:]}
        assert rows["payments"][1:3] == ["4", str(teams["payments"]["signals"]["traces"]["bytes"])], rows
        assert rows["payments"][-1] == "enforce" and rows["search"][-1] == "observe"
        assert [r[:3] for r in t.tables["unowned"][1:]] == [["legacy-batch", "python", "5"], ["cron-job", "python", "2"]]
        assert t.tables["series"][1][:5] == ["policy", "payments", "logins", "30", "user.id"]
        assert t.tables["catalog"][1][:2] == ["ownership", "ok"]
        shot = tmp_path / "status.png"
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={shot}", "--window-size=1280,1500", f"http://127.0.0.1:{admin}/status"],
                       capture_output=True, timeout=60, check=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("SIGHTLINE_UPDATE_DOCS") == "1":
            shutil.copy(shot, REPO / "docs" / "status.png")

        # A broken catalog file: the reload fails, the previous catalog stays, the page says why.
        (tmp_path / "catalog" / "teams.yaml").write_text(CATALOG + "  - match: { service.name: x }\n    team: nobody\n")
        assert wait_until(lambda: snap()["catalogs"][0]["ok"] is False, 20), snap()["catalogs"]
        errors = snap()["catalogs"][0]["errors"]
        assert errors == [f'{tmp_path}/catalog/teams.yaml:15: rule 2: unknown team "nobody"'], errors
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
