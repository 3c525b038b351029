"""ClickHouse for the tests: chDB (ClickHouse's engine as a Python library, from PyPI) behind a
small loopback HTTP endpoint that speaks the part of ClickHouse's HTTP interface an inserting
client uses. No ClickHouse server can be installed on these machines (Debian's package is
from 2018, and no container daemon runs), so this wrapper stands in for the server's HTTP
layer; the SQL, the table engines, RowBinary parsing and every query run in chDB itself.

What the endpoint does, as ClickHouse's HTTP interface does:
- POST with the SQL in the body (DDL, DESCRIBE, SELECT): runs it, answers TabSeparated
  unless the statement names a format.
- POST with `query=INSERT ... FORMAT RowBinary` in the URL: the body is the data; with
  `decompress=1` it is first read as ClickHouse's native compressed blocks (the CityHash128
  v1.0.2 checksum verified with the clickhouse-cityhash package, LZ4 with the lz4 package,
  ZSTD with zstandard); `Content-Encoding: gzip` is also read.
- `X-ClickHouse-User` / `X-ClickHouse-Key` are checked when the endpoint is made with a
  user; a wrong pair is refused as ClickHouse refuses it (HTTP 403, code 516).
- Errors: the ClickHouse exception text as the body, `X-ClickHouse-Exception-Code`, and the
  HTTP status ClickHouse maps that code to.
URL parameters that are ClickHouse settings are recorded (`settings_seen`) but not applied:
chDB runs every insert synchronously.
"""

import gzip
import re
import struct
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

# ClickHouse's exception code -> HTTP status (the ones a client of these tests can meet).
STATUS = {60: 404, 81: 404, 115: 404, 47: 404, 62: 400, 27: 400, 6: 400, 53: 400, 117: 400, 36: 400, 516: 403, 497: 403}

_SESSION = None
_SESSION_LOCK = threading.Lock()


def session(path: Path):
    """The process's chDB session (chDB allows one data path per process)."""
    global _SESSION
    from chdb import session as chs

    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = chs.Session(str(path))
        return _SESSION


def decompress_blocks(body: bytes) -> bytes:
    """ClickHouse's native compressed blocks to their data; raises ValueError naming what is
    wrong."""
    import lz4.block
    from clickhouse_cityhash.cityhash import CityHash128

    out = bytearray()
    pos = 0
    while pos < len(body):
        if len(body) - pos < 25:
            raise ValueError("truncated block header")
        size, raw = struct.unpack_from("<II", body, pos + 17)
        if size < 9 or pos + 16 + size > len(body):
            raise ValueError("truncated block")
        block = body[pos + 16 : pos + 16 + size]
        h = CityHash128(block)
        if struct.pack("<QQ", h >> 64, h & (2**64 - 1)) != body[pos : pos + 16]:
            raise ValueError("checksum mismatch")
        method, payload = block[0], block[9:]
        if method == 0x82:
            data = lz4.block.decompress(payload, uncompressed_size=raw)
        elif method == 0x90:
            import zstandard

            data = zstandard.ZstdDecompressor().decompress(payload, max_output_size=raw)
        elif method == 0x02:
            data = payload
        else:
            raise ValueError(f"unknown method 0x{method:02x}")
        if len(data) != raw:
            raise ValueError("block data shorter than its header says")
        out += data
        pos += 16 + size
    return bytes(out)


class ClickHouse:
    """The endpoint: `url` (http://127.0.0.1:PORT), `query(sql)` for the tests' own
    queries, and what was received (`inserts`: (query, rows bytes) per insert)."""

    def __init__(self, data_dir: Path, user: str | None = None, password: str = ""):
        self.db = session(data_dir)
        self.lock = threading.Lock()
        self.user, self.password = user, password
        self.inserts: list[tuple[str, int]] = []
        self.statements: list[str] = []
        self.settings_seen: dict[str, str] = {}
        self.refused_auth = 0
        self.tmp = Path(tempfile.mkdtemp(prefix="chdb-http-"))
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                owner._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def query(self, sql: str, fmt: str = "JSONEachRow") -> str:
        with self.lock:
            return self.db.query(sql, fmt).bytes().decode()

    def count(self, table: str) -> int:
        """Rows in `table`, 0 while it does not exist (the exporter creates it at its first
        send)."""
        try:
            return int(self.query(f"SELECT count() FROM {table}", "TabSeparated"))
        except Exception as e:  # noqa: BLE001 - chDB's error type
            if "UNKNOWN_TABLE" in str(e) or "UNKNOWN_DATABASE" in str(e):
                return 0
            raise

    def rows(self, sql: str) -> list[dict]:
        import json

        return [json.loads(line) for line in self.query(sql).splitlines() if line.strip()]

    def _answer(self, h, status: int, body: bytes, code: int | None = None):
        h.send_response(status)
        if code is not None:
            h.send_header("X-ClickHouse-Exception-Code", str(code))
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h):
        length = int(h.headers.get("Content-Length", "0"))
        body = h.rfile.read(length)
        params = {k: v[-1] for k, v in parse_qs(urlparse(h.path).query, keep_blank_values=True).items()}
        if self.user is not None and (
            h.headers.get("X-ClickHouse-User") != self.user or h.headers.get("X-ClickHouse-Key", "") != self.password
        ):
            self.refused_auth += 1
            msg = f"Code: 516. DB::Exception: {h.headers.get('X-ClickHouse-User', 'default')}: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)\n"
            return self._answer(h, 403, msg.encode(), 516)
        for k, v in params.items():
            if k not in ("query", "decompress", "compress", "database"):
                self.settings_seen[k] = v
        try:
            if h.headers.get("Content-Encoding", "") == "gzip":
                body = gzip.decompress(body)
            query = params.get("query")
            if query is None:
                sql = body.decode()
                self.statements.append(sql)
                fmt = "TabSeparated"
                with self.lock:
                    out = self.db.query(sql, fmt).bytes()
                return self._answer(h, 200, out)
            if params.get("decompress") == "1":
                try:
                    body = decompress_blocks(body)
                except ValueError as e:
                    code = 40 if "checksum" in str(e) else 271
                    return self._answer(h, 500, f"Code: {code}. DB::Exception: {e}\n".encode(), code)
            m = re.fullmatch(r"\s*(INSERT\s+INTO\s+.*?)\s+FORMAT\s+RowBinary\s*", query, re.S | re.I)
            if not m:
                return self._answer(h, 400, b"Code: 62. DB::Exception: this endpoint takes INSERT ... FORMAT RowBinary only\n", 62)
            f = self.tmp / f"insert-{threading.get_ident()}.bin"
            f.write_bytes(body)
            with self.lock:
                self.db.query(f"{m.group(1)} FROM INFILE '{f}' FORMAT RowBinary", "TabSeparated")
            self.inserts.append((query, len(body)))
            return self._answer(h, 200, b"")
        except Exception as e:  # chDB raises with ClickHouse's own message
            text = str(e)
            c = re.search(r"Code: (\d+)", text)
            code = int(c.group(1)) if c else 1000
            return self._answer(h, STATUS.get(code, 500), (text + "\n").encode(), code)


if __name__ == "__main__":
    # `python peer_chdb.py DATA_DIR`: serves until stdin closes, after printing its port (the
    # Rust end-to-end tests run it this way).
    import sys

    ch = ClickHouse(Path(sys.argv[1]))
    print(ch.port, flush=True)
    sys.stdin.read()
    ch.stop()
