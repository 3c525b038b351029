"""What every real backend peer (VictoriaMetrics, VictoriaLogs, Jaeger, Prometheus) does the
same way: find its binary, run it in the foreground of the test with its output in a log file,
wait until it answers (or fail the test with its log when it exits or never gets ready), and
stop it. Each peer module adds only its command line, its readiness check and its query
client."""

import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]

# How much of a peer's log a failure message or a teardown print shows.
LOG_TAIL = 6000


def peer_binary(name: str, env_var: str, default: Path) -> str:
    """The peer's executable: `env_var` if set, else `default` (built by scripts/test.sh)."""
    path = os.environ.get(env_var, str(default))
    if not os.access(path, os.X_OK):
        pytest.fail(f"{name} binary not found at {path} (scripts/test.sh builds it)")
    return path


def http_ok(url: str) -> bool:
    """Whether a GET answers 200 (a health or readiness endpoint); False while nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class PeerProcess:
    """A started peer. Subclasses set `NAME`, call `start()` from `__init__` and define
    `ready()`."""

    NAME = "peer"
    START_TIMEOUT = 60
    STOP_TIMEOUT = 20

    def start(self, args: list[str], log_path: Path, env: dict[str, str] | None = None):
        """Runs `args` with stdout and stderr in `log_path`; returns once `ready()` holds.
        Fails the test with the log's tail if the peer exits or is not ready in time."""
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if not wait_until(lambda: self.ready() or self.exited(), self.START_TIMEOUT) or self.exited():
            text = self.log_text()
            self.stop()
            pytest.fail(f"{self.NAME} did not start:\n{text}")

    def ready(self) -> bool:
        raise NotImplementedError

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def log_text(self) -> str:
        """The tail of the peer's log so far."""
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()[-LOG_TAIL:]

    def print_log(self):
        """Prints the log's tail; from a fixture's teardown, pytest shows it when the test failed."""
        print(f"--- {self.NAME} log ({self.log_path}) ---\n{self.log_text()}")

    def stop(self):
        """Terminates the peer, kills it if it does not exit in time; closes the log."""
        if not self.exited():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
