"""A real single-node VictoriaLogs (built from its Go modules by scripts/test.sh into
.peers/victoria-logs, or VICTORIALOGS_BIN) on a free loopback port with a temporary data
directory, and a small client for its LogsQL query API."""

import json
import os
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def binary() -> str:
    path = os.environ.get("VICTORIALOGS_BIN", str(ROOT / ".peers" / "victoria-logs"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"VictoriaLogs binary not found at {path} (scripts/test.sh builds it)")
    return path


class VictoriaLogs:
    def __init__(self, tmp: Path, *flags: str):
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "victoria-logs.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [
                binary(),
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={tmp / 'vl-data'}",
                "-retentionPeriod=1d",
                *flags,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        if not wait_until(lambda: self.healthy() or self.proc.poll() is not None, 60) or self.proc.poll() is not None:
            text = self.log_text()
            self.stop()
            pytest.fail(f"VictoriaLogs did not start:\n{text}")

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text()[-6000:]

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

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

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def victorialogs(tmp_path):
    """A started VictoriaLogs. Its log is printed at teardown, which pytest shows when the test
    failed."""
    d = tmp_path / "vl"
    d.mkdir()
    vl = VictoriaLogs(d)
    yield vl
    vl.stop()
    print(f"--- VictoriaLogs log ({vl.log_path}) ---\n{vl.log_path.read_text()[-6000:]}")
