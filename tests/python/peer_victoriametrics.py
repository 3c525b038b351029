"""A real single-node VictoriaMetrics (built from its Go modules by scripts/test.sh into
.peers/victoria-metrics, or VICTORIAMETRICS_BIN) on a free loopback port with a temporary
data directory, and small clients for its Prometheus query API."""

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, wait_until
from peers import ROOT, PeerProcess, http_ok, peer_binary


class VictoriaMetrics(PeerProcess):
    NAME = "VictoriaMetrics"

    def __init__(self, tmp: Path, *flags: str):
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = [
            peer_binary(self.NAME, "VICTORIAMETRICS_BIN", ROOT / ".peers" / "victoria-metrics"),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={tmp / 'vm-data'}",
            "-retentionPeriod=1d",
            # Serve the newest samples at once (the default hides the last 30s).
            "-search.latencyOffset=0s",
            "-search.disableCache",
            *flags,
        ]
        self.start(args, tmp / "victoria-metrics.log")

    def ready(self) -> bool:
        return self.healthy()

    def healthy(self) -> bool:
        return http_ok(f"{self.base}/health")

    def get(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.base}{path}?{query}", timeout=10) as r:
            return json.loads(r.read())

    def force_flush(self):
        """Makes the samples buffered in memory searchable."""
        with urllib.request.urlopen(f"{self.base}/internal/force_flush", timeout=10) as r:
            r.read()

    def series(self, match: str) -> list[dict]:
        """Label sets of the series matching the selector (after a flush)."""
        self.force_flush()
        return self.get("/api/v1/series", **{"match[]": match, "start": "-1h"})["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant query results (after a flush)."""
        self.force_flush()
        return self.get("/api/v1/query", query=expr)["data"]["result"]

    def wait_series(self, match: str, count: int = 1, timeout: float = 30) -> list[dict]:
        """Polls until at least `count` series match; returns the last answer."""
        found: list[dict] = []

        def arrived():
            found[:] = self.series(match)
            return len(found) >= count

        wait_until(arrived, timeout)
        return found

    def wait_query(self, expr: str, pred, timeout: float = 30) -> list[dict]:
        """Polls the instant query until `pred(result)` holds; returns the last result."""
        found: list[dict] = []

        def done():
            found[:] = self.query(expr)
            return pred(found)

        wait_until(done, timeout)
        return found


@pytest.fixture
def victoriametrics_factory(tmp_path):
    """Starts VictoriaMetrics with extra flags. Its log is printed at teardown, which pytest
    shows when the test failed."""
    started: list[VictoriaMetrics] = []

    def make(*flags: str) -> VictoriaMetrics:
        d = tmp_path / f"vm{len(started)}"
        d.mkdir()
        vm = VictoriaMetrics(d, *flags)
        started.append(vm)
        return vm

    yield make
    for vm in started:
        vm.stop()
        vm.print_log()
