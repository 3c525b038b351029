"""A throwaway PKI made with the openssl CLI: a CA, a server certificate for localhost and
127.0.0.1 signed by it, and optionally a client certificate (mutual TLS). Keys are P-256,
unencrypted PKCS#8 PEM (what rustls, librdkafka and Kafka's PEM key stores all read)."""

import subprocess
from pathlib import Path


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(d: Path, name: str, cn: str, ext: str):
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    (d / f"{name}.cnf").write_text(ext)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.cnf", cwd=d)


def make_pki(d: Path, client: bool = False):
    """Writes ca.pem, server.pem + server-key.pem and, with `client`, client.pem +
    client-key.pem into `d`."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            cwd=d)
    _signed(d, "server", "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    if client:
        _signed(d, "client", "sightline-test-client", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
