"""ClickHouse for the tests: chDB (ClickHouse's engine as a Python library, from PyPI) behind a
small loopback HTTP endpoint that speaks the part of ClickHouse's HTTP interface an inserting
client uses. No ClickHouse server can be installed on these machines (Debian's package is
from 2018, and no container daemon runs), so this wrapper stands in for the server's HTTP
layer; the SQL, the table engines, RowBinary parsing and every query run in chDB itself.

What the endpoint does, as ClickHouse's HTTP interface does:
- POST with the SQL in the body (DDL, DESCRIBE, SELECT): runs it, answers TabSeparated
  unless the statement names a format.
- A statement in the body is answered in the client's `default_format` when it names none:
  clickhouse-go (the collector's driver) asks for `Native` with `client_protocol_version`, so
  the block info and serialization flags of that protocol revision are added, and with
  `compress=1` the answer is sent in ClickHouse's LZ4 blocks.
- POST with `query=INSERT ... FORMAT RowBinary` (or `Native`) in the URL: the body is the data
  (streamed in chunks by clickhouse-go); with
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


def ch_blocks(data: bytes) -> bytes:
    """`data` as ClickHouse's compressed blocks (LZ4, CityHash128 v1.0.2 checksums)."""
    import lz4.block
    from clickhouse_cityhash.cityhash import CityHash128

    out = bytearray()
    for i in range(0, max(len(data), 1), 1 << 20):
        raw = data[i : i + (1 << 20)]
        payload = lz4.block.compress(raw, store_size=False)
        block = struct.pack("<BII", 0x82, 9 + len(payload), len(raw)) + payload
        h = CityHash128(block)
        out += struct.pack("<QQ", h >> 64, h & (2**64 - 1)) + block
    return bytes(out)


def uvarint(b: bytes, pos: int):
    shift = value = 0
    while True:
        x = b[pos]
        pos += 1
        value |= (x & 0x7F) << shift
        if x < 0x80:
            return value, pos
        shift += 7


def put_uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def native_for_client(data: bytes) -> bytes:
    """chDB's `Native` output (the format of a client with no protocol revision) as ClickHouse's
    HTTP interface writes it for a client that sends `client_protocol_version` (clickhouse-go
    does): each block starts with its BlockInfo, and each column's type is followed by its
    custom-serialization flag (0). Only String and UInt32 columns are read (what the hello and
    `DESCRIBE TABLE` answer with)."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        ncols, pos = uvarint(data, pos)
        nrows, pos = uvarint(data, pos)
        out += b"\x01\x00\x02\xff\xff\xff\xff\x00"  # BlockInfo: is_overflows false, bucket_num -1, end
        out += put_uvarint(ncols) + put_uvarint(nrows)
        for _ in range(ncols):
            start = pos
            for _ in range(2):  # name, type
                n, pos = uvarint(data, pos)
                pos += n
            n, p2 = uvarint(data, start)
            tn, p3 = uvarint(data, p2 + n)
            ctype = data[p3 : p3 + tn].decode()
            out += data[start:pos] + b"\x00"
            begin = pos
            if ctype == "String":
                for _ in range(nrows):
                    n, pos = uvarint(data, pos)
                    pos += n
            elif ctype == "UInt32":
                pos += 4 * nrows
            else:
                raise ValueError(f"column type {ctype} not handled")
            out += data[begin:pos]
    return bytes(out)


def read_body(h) -> bytes:
    """The request body, `Content-Length` or chunked (clickhouse-go streams its inserts)."""
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += h.rfile.read(size)
            h.rfile.readline()
    length = int(h.headers.get("Content-Length", "0") or 0)
    return h.rfile.read(length) if length else b""


class ClickHouse:
    """The endpoint: `url` (http://127.0.0.1:PORT), `query(sql)` for the tests' own
    queries, and what was received (`inserts`: (query, rows bytes) per insert)."""

    def __init__(self, data_dir: Path, user: str | None = None, password: str = "", count_only: bool = False):
        """`count_only` (benchmarks): inserts are read and counted (`insert_bytes`) but not
        executed, and the answers to SELECT and DESCRIBE are cached by their text, so the
        endpoint costs its host as little as possible."""
        self.db = session(data_dir)
        self.count_only = count_only
        self.cache: dict[tuple, bytes] = {}
        self.insert_bytes = 0
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
        body = read_body(h)
        params = {k: v[-1] for k, v in parse_qs(urlparse(h.path).query, keep_blank_values=True).items()}
        if self.user is not None and (
            h.headers.get("X-ClickHouse-User") != self.user or h.headers.get("X-ClickHouse-Key", "") != self.password
        ):
            self.refused_auth += 1
            msg = f"Code: 516. DB::Exception: {h.headers.get('X-ClickHouse-User', 'default')}: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)\n"
            return self._answer(h, 403, msg.encode(), 516)
        for k, v in params.items():
            if k not in ("query", "decompress", "compress", "database", "default_format", "client_protocol_version"):
                self.settings_seen[k] = v
        try:
            if h.headers.get("Content-Encoding", "") == "gzip":
                body = gzip.decompress(body)
            query = params.get("query")
            if query is None:
                # A statement in the body: answered in the format it names, else the
                # client's `default_format` (clickhouse-go: Native), else TabSeparated.
                sql = body.decode()
                named = re.search(r"\sFORMAT\s+\w+\s*;?\s*$", sql, re.I)
                fmt = "TabSeparated" if named else params.get("default_format", "TabSeparated")
                key = (sql, fmt, "client_protocol_version" in params, params.get("compress"))
                out = self.cache.get(key) if self.count_only else None
                if out is None:
                    self.statements.append(sql)
                    with self.lock:
                        out = self.db.query(sql, fmt).bytes()
                    if fmt == "Native" and "client_protocol_version" in params and out:
                        out = native_for_client(out)
                    if params.get("compress") == "1" and out:
                        out = ch_blocks(out)
                    if self.count_only and re.match(r"\s*(SELECT|DESCRIBE)\b", sql, re.I):
                        self.cache[key] = out
                return self._answer(h, 200, out)
            if self.count_only and re.match(r"\s*INSERT\b", query, re.I):
                with self.lock:
                    self.inserts.append((query, len(body)))
                    self.insert_bytes += len(body)
                return self._answer(h, 200, b"")
            if params.get("decompress") == "1":
                try:
                    body = decompress_blocks(body)
                except ValueError as e:
                    code = 40 if "checksum" in str(e) else 271
                    return self._answer(h, 500, f"Code: {code}. DB::Exception: {e}\n".encode(), code)
            m = re.fullmatch(r"\s*(INSERT\s+INTO\s+.*?)\s+FORMAT\s+(RowBinary|Native)\s*", query, re.S | re.I)
            if not m:
                return self._answer(h, 400, b"Code: 62. DB::Exception: this endpoint takes INSERT ... FORMAT RowBinary or Native only\n", 62)
            f = self.tmp / f"insert-{threading.get_ident()}.bin"
            f.write_bytes(body)
            with self.lock:
                self.db.query(f"{m.group(1)} FROM INFILE '{f}' FORMAT {m.group(2)}", "TabSeparated")
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
