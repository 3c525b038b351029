"""The Python OpenTelemetry SDK against a secured receiver: gRPC over TLS (a CA generated
here with the openssl CLI) with a bearer token bound to ownership. A span of a service the
catalog does not know is attributed to the token's team; a wrong token is refused and
counted; the token never appears in sightline's log or metrics."""

import grpc
from conftest import Sightline, wait_until
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from pki import make_pki
from test_python_sdk import read_resources

TOKEN = "py-Secret-token-0123456789"


def send(sl, service, token, ca):
    exporter = OTLPSpanExporter(
        endpoint=f"localhost:{sl.grpc}",
        credentials=grpc.ssl_channel_credentials(root_certificates=ca),
        headers={"authorization": f"Bearer {token}"},
    )
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("sec").start_as_current_span("op"):
        pass
    provider.shutdown()


def test_python_sdk_over_tls_with_a_bound_token(tmp_path):
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    (pki / "tokens.yaml").write_text(f'tokens:\n  - team: search\n    token: "{TOKEN}"\n')
    extra = (
        f'tls: {{ cert_file: "{pki}/server.pem", key_file: "{pki}/server-key.pem" }}, '
        f'auth: {{ tokens_file: "{pki}/tokens.yaml", bind_ownership_to_token: true }}'
    )
    d = tmp_path / "sl"
    d.mkdir()
    sl = Sightline(d, protocol_extra=extra)
    try:
        ca = (pki / "ca.pem").read_bytes()
        send(sl, "py-brand-new", TOKEN, ca)
        path = d / "traces.jsonl"
        assert wait_until(lambda: len(read_resources(path)) > 0)
        got = read_resources(path)
        assert got[0]["service.name"] == "py-brand-new"
        assert got[0]["owner.team"] == "search"
        assert got[0]["owner.source"] == "token"

        send(sl, "py-brand-new", "not-the-token", ca)
        series = 'sightline_auth_refused_requests_total{receiver="otlp",transport="grpc",reason="invalid_token"}'
        assert wait_until(lambda: any(l.startswith(series) and not l.endswith(" 0") for l in sl.metrics().splitlines()))
        assert len(read_resources(path)) == 1
        assert "py-Secret" not in sl.metrics()
    finally:
        sl.stop()
    assert "py-Secret" not in (d / "stderr.log").read_text()
