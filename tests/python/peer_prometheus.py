"""A real Prometheus (Debian's `prometheus` package, installed by scripts/test.sh) as a
remote-write receiver on a free loopback port, with its TSDB in a temporary directory. The
package's service is not used: the binary runs in the foreground of the test."""

import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import free_port, wait_until

CONFIG = """
global:
  scrape_interval: 15s
  evaluation_interval: 15s
"""


class Prometheus:
    def __init__(self, tmp: Path, native_histograms: bool = False, scrape: list[str] | None = None):
        """`scrape`: host:port targets whose /metrics Prometheus scrapes every second."""
        binary = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed (scripts/test.sh installs Debian's package)")
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
        self.log = open(tmp / "prometheus.log", "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        ok = wait_until(lambda: self.ready() or self.proc.poll() is not None, 60)
        assert ok and self.proc.poll() is None, (tmp / "prometheus.log").read_text()

    @property
    def write_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, promql: str) -> list:
        """The result vector of an instant query."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.loads(r.read())
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
