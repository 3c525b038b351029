"""A real Prometheus (Debian's `prometheus` package, installed by scripts/test.sh) as a
remote-write receiver on a free loopback port, with its TSDB in a temporary directory. The
package's service is not used: the binary runs in the foreground of the test."""

import json
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port
from peers import PeerProcess, http_ok

CONFIG = """
global:
  scrape_interval: 15s
  evaluation_interval: 15s
"""


class Prometheus(PeerProcess):
    NAME = "Prometheus"
    STOP_TIMEOUT = 30

    def __init__(self, tmp: Path, native_histograms: bool = False, scrape: list[str] | None = None):
        """`scrape`: host:port targets whose /metrics Prometheus scrapes every second."""
        binary = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed (scripts/test.sh installs Debian's package)")
        self.tmp = tmp
        self.port = free_port()
        config = CONFIG
        if scrape:
            targets = ", ".join(f'"{t}"' for t in scrape)
            config += f"""scrape_configs:
  - job_name: sightline
    scrape_interval: 1s
    static_configs: [{{ targets: [{targets}] }}]
"""
        (tmp / "prometheus.yml").write_text(config)
        args = [
            binary,
            "--web.enable-remote-write-receiver",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--config.file={tmp / 'prometheus.yml'}",
        ]
        if native_histograms:
            args.append("--enable-feature=native-histograms")
        self.start(args, tmp / "prometheus.log")

    @property
    def write_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.port}/-/ready")

    def query(self, promql: str) -> list:
        """The result vector of an instant query."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.loads(r.read())
        assert doc["status"] == "success", doc
        return doc["data"]["result"]
