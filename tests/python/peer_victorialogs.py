"""A real single-node VictoriaLogs (built from its Go modules by scripts/test.sh into
.peers/victoria-logs, or VICTORIALOGS_BIN) on a free loopback port with a temporary data
directory, and a small client for its LogsQL query API."""

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, wait_until
from peers import ROOT, PeerProcess, http_ok, peer_binary


class VictoriaLogs(PeerProcess):
    NAME = "VictoriaLogs"

    def __init__(self, tmp: Path, *flags: str):
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = [
            peer_binary(self.NAME, "VICTORIALOGS_BIN", ROOT / ".peers" / "victoria-logs"),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={tmp / 'vl-data'}",
            "-retentionPeriod=1d",
            *flags,
        ]
        self.start(args, tmp / "victoria-logs.log")

    def ready(self) -> bool:
        return self.healthy()

    def healthy(self) -> bool:
        return http_ok(f"{self.base}/health")

    def force_flush(self):
        """Makes the rows buffered in memory searchable."""
        with urllib.request.urlopen(f"{self.base}/internal/force_flush", timeout=10) as r:
            r.read()

    def query(self, logsql: str, limit: int = 1000) -> list[dict]:
        """The rows matching a LogsQL query (after a flush), one dict of fields per row."""
        self.force_flush()
        body = urllib.parse.urlencode({"query": logsql, "limit": str(limit)}).encode()
        with urllib.request.urlopen(f"{self.base}/select/logsql/query", data=body, timeout=10) as r:
            text = r.read().decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_rows(self, logsql: str, count: int, timeout: float = 30) -> list[dict]:
        """Polls until the query returns at least `count` rows (ingested rows become
        searchable after a short delay); returns the last answer."""
        found: list[dict] = []

        def arrived():
            found[:] = self.query(logsql)
            return len(found) >= count

        wait_until(arrived, timeout)
        return found


@pytest.fixture
def victorialogs(tmp_path):
    """A started VictoriaLogs. Its log is printed at teardown, which pytest shows when the test
    failed."""
    d = tmp_path / "vl"
    d.mkdir()
    vl = VictoriaLogs(d)
    yield vl
    vl.stop()
    vl.print_log()
