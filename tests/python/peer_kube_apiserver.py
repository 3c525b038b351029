"""A real kube-apiserver with an embedded etcd (tests/peers/kube-apiserver, built from the
Kubernetes Go modules by scripts/test.sh into .peers/kube-apiserver, or KUBE_APISERVER_BIN), on
free loopback ports, with RBAC on and static bearer tokens: `admin` (system:masters) for the
test itself and `sightline`, which has only the rights a test grants it.

No kubelet, scheduler or controller runs: the test plays the kubelet by setting each pod's
`spec.nodeName` at creation and its `status` (phase, IP) through the status subresource, and a
pod deleted with the default grace period stays terminating until the test deletes it with
grace 0, as a kubelet would confirm it."""

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from conftest import free_port
from peers import ROOT, PeerProcess, peer_binary

ADMIN_TOKEN = "admin-token"
SIGHTLINE_TOKEN = "sightline-token"


class KubeApiServer(PeerProcess):
    NAME = "kube-apiserver"

    def __init__(self, tmp: Path, *flags: str):
        self.tmp = tmp
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        certs = tmp / "kube-certs"
        certs.mkdir(exist_ok=True)
        tokens = tmp / "kube-tokens.csv"
        tokens.write_text(f"{ADMIN_TOKEN},admin,admin-uid,system:masters\n{SIGHTLINE_TOKEN},sightline,sightline-uid\n")
        self.ca = certs / "apiserver.crt"
        self._ctx = ssl.create_default_context()
        self._ctx.check_hostname = False
        self._ctx.verify_mode = ssl.CERT_NONE
        self.etcd_port = free_port()
        env = dict(
            os.environ,
            ETCD_DIR=str(tmp / "etcd"),
            ETCD_CLIENT_PORT=str(self.etcd_port),
            ETCD_PEER_PORT=str(free_port()),
            SA_KEY_FILE=str(tmp / "sa.key"),
        )
        args = [
            peer_binary(self.NAME, "KUBE_APISERVER_BIN", ROOT / ".peers" / "kube-apiserver"),
            "--bind-address=127.0.0.1",
            f"--secure-port={self.port}",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={certs}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={tmp / 'sa.key'}",
            f"--service-account-signing-key-file={tmp / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/24",
            # No controller manager makes the `default` service account of each namespace.
            "--disable-admission-plugins=ServiceAccount",
            "--enable-priority-and-fairness=false",
            *flags,
        ]
        self.start(args, tmp / "kube-apiserver.log", env)

    def ready(self) -> bool:
        try:
            return self.request("GET", "/readyz", raw=True) == b"ok"
        except (OSError, urllib.error.URLError):
            return False

    def request(self, method: str, path: str, body=None, token: str = ADMIN_TOKEN, content_type: str = "application/json", raw=False):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=10, context=self._ctx) as r:
            text = r.read()
        return text if raw else json.loads(text)

    def kubeconfig(self, path: Path, token: str = SIGHTLINE_TOKEN, server: str | None = None) -> Path:
        """A kubeconfig for `token` that trusts the server's generated certificate."""
        path.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster: {{ server: "{server or self.base}", certificate-authority: "{self.ca}" }}
users:
  - name: test
    user: {{ token: "{token}" }}
contexts:
  - name: test
    context: {{ cluster: test, user: test }}
current-context: test
"""
        )
        return path

    def apply_rbac(self, docs: list[dict]):
        """Creates RBAC objects (a ClusterRole and its binding, as the chart renders them)."""
        for d in docs:
            kind = d["kind"]
            plural = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings"}[kind]
            self.request("POST", f"/apis/rbac.authorization.k8s.io/v1/{plural}", d)

    def namespace(self, name: str, labels: dict | None = None, annotations: dict | None = None):
        meta = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
        self.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": meta})

    def pod(self, ns: str, name: str, node: str, ip: str | None, labels: dict | None = None, replicaset: str | None = None, host_network: bool = False) -> str:
        """Creates a running pod (as scheduled and started by a kubelet); returns its UID."""
        meta = {"name": name, "labels": labels or {}}
        if replicaset:
            meta["ownerReferences"] = [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replicaset, "uid": f"rs-{replicaset}", "controller": True}
            ]
        spec = {"nodeName": node, "hostNetwork": host_network, "containers": [{"name": "app", "image": "app:1"}]}
        pod = self.request("POST", f"/api/v1/namespaces/{ns}/pods", {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
        self.set_status(ns, name, "Running", ip)
        return pod["metadata"]["uid"]

    def set_status(self, ns: str, name: str, phase: str, ip: str | None):
        status = {"phase": phase}
        if ip:
            status.update(podIP=ip, podIPs=[{"ip": ip}])
        self.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": status}, content_type="application/merge-patch+json")

    def label_pod(self, ns: str, name: str, labels: dict):
        self.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}", {"metadata": {"labels": labels}}, content_type="application/merge-patch+json")

    def delete_pod(self, ns: str, name: str, grace: int | None = 0):
        """grace=0: gone at once (a kubelet confirmed it); None: the default grace period, so the
        pod stays, terminating, with its IP."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        self.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", body)
