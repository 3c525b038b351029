"""A real Prometheus 3.16 (built from its Go modules, module v0.316.0, by scripts/test.sh into
.peers/prometheus, or PROMETHEUS_BIN) as a remote-write receiver (Remote Write 1.0 and 2.0) on a
free loopback port, with its TSDB in a temporary directory."""

import json
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import free_port
from peers import ROOT, PeerProcess, http_ok, peer_binary

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
        binary = peer_binary(self.NAME, "PROMETHEUS_BIN", ROOT / ".peers" / "prometheus")
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
            "--web.remote-write-receiver.accepted-protobuf-messages=prometheus.WriteRequest",
            "--web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request",
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
