"""Kubernetes metadata as an ownership source, against a real kube-apiserver (with etcd, built
from the Kubernetes Go modules; see peer_kube_apiserver.py) on loopback with RBAC on.

Sightline authenticates as the service account the Helm chart creates, with the ClusterRole
and binding the chart's `kubernetesOwnership` preset renders, so the chart's RBAC is proven
sufficient. The test plays the kubelet (pod status, IPs, deletion). Pod IPs are loopback
addresses (127.0.0.x) and each request is sent from the pod's address, so association by
connection is real. No container runs: the pods are API objects only."""

import http.client
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import admin_metrics, admin_ready, complete_lines, free_port, stop_process, wait_until
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from peer_kube_apiserver import KubeApiServer
from peers import ROOT

CATALOG = """
teams:
  - name: payments
    contact: "#payments"
  - name: web-platform
services:
  - name: checkout
    team: payments
"""

BACKSTAGE = """
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: storefront
  annotations: { backstage.io/kubernetes-id: storefront-ui }
spec: { type: service, owner: group:default/web-platform, lifecycle: production }
"""

TEAM_FROM = """
      team_from:
        - { from: pod, label: team }
        - { from: namespace, label: team }
        - { from: namespace, annotation: owner.example.com/team }"""


def helm_rbac() -> list[dict]:
    """The chart's ServiceAccount, ClusterRole and ClusterRoleBinding with the
    kubernetesOwnership preset (release `sightline`, namespace `observability`)."""
    out = subprocess.run(
        [os.environ["HELM_BIN"], "template", "sightline", str(ROOT / "deploy/helm/sightline"), "--namespace", "observability",
         "--set", "presets.kubernetesOwnership.enabled=true"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    return [d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]


def setup_chart_identity(kube: KubeApiServer, tmp: Path, server: str | None = None) -> Path:
    """Creates the chart's RBAC and service account; returns a kubeconfig with a token of that
    service account (from the TokenRequest API)."""
    objs = helm_rbac()
    kube.namespace("observability")
    sa = next(d for d in objs if d["kind"] == "ServiceAccount")
    kube.request("POST", "/api/v1/namespaces/observability/serviceaccounts", sa)
    kube.apply_rbac([d for d in objs if d["kind"] != "ServiceAccount"])
    token = kube.request(
        "POST",
        f"/api/v1/namespaces/observability/serviceaccounts/{sa['metadata']['name']}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}},
    )["status"]["token"]
    return kube.kubeconfig(tmp / "kubeconfig", token=token, server=server)


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    if "HELM_BIN" not in os.environ:
        pytest.fail("HELM_BIN must point at helm (scripts/test.sh builds it)")
    tmp = tmp_path_factory.mktemp("kube")
    k = KubeApiServer(tmp)
    k.kubeconfig_path = setup_chart_identity(k, tmp)
    yield k
    k.print_log()
    k.stop()


class Run:
    """A Sightline with `ownership.kubernetes` set to `k8s` (YAML at the block's indentation),
    writing traces to a file."""

    def __init__(self, tmp: Path, k8s: str, env: dict[str, str], expect_exit: bool = False):
        self.tmp = tmp
        self.http, self.grpc, self.admin = free_port(), free_port(), free_port()
        (tmp / "catalog").mkdir(exist_ok=True)
        (tmp / "catalog" / "teams.yaml").write_text(CATALOG)
        (tmp / "backstage").mkdir(exist_ok=True)
        (tmp / "backstage" / "catalog-info.yaml").write_text(BACKSTAGE)
        self.out = tmp / "traces.jsonl"
        self.config = tmp / "sightline.yaml"
        self.config.write_text(f"""
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{self.grpc}" }}
      http: {{ endpoint: "127.0.0.1:{self.http}" }}
processors:
  ownership:
    catalog: ["{tmp}/catalog"]
    backstage: ["{tmp}/backstage/catalog-info.yaml"]
    kubernetes:
      enabled: true
{k8s}
exporters:
  file:
    path: "{self.out}"
    sending_queue: {{ batch: {{ flush_timeout: 20ms }} }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{self.admin}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [ownership], exporters: [file] }}
""")
        self.stderr_path = tmp / "stderr.log"
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [os.environ["SIGHTLINE_BIN"], "run", "--config", str(self.config)],
            stderr=self.stderr, env=dict(os.environ, RUST_LOG="info", **env),
        )
        if expect_exit:
            return
        assert wait_until(lambda: self.ready() or self.proc.poll() is not None, 40), self.log()
        assert self.proc.poll() is None and self.ready(), self.log()

    def log(self) -> str:
        self.stderr.flush()
        return self.stderr_path.read_text()[-6000:]

    def ready(self) -> bool:
        return admin_ready(self.admin)

    def metrics(self) -> str:
        return admin_metrics(self.admin)

    def metric(self, line_prefix: str) -> float | None:
        for line in self.metrics().splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def send(self, marker: str, source_ip: str = "127.0.0.1", resource: dict | None = None):
        """One span named `marker`, posted over OTLP/HTTP from `source_ip`."""
        attrs = [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in (resource or {}).items()]
        req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
            resource={"attributes": attrs},
            scope_spans=[ScopeSpans(spans=[Span(trace_id=os.urandom(16), span_id=os.urandom(8), name=marker)])],
        )])
        conn = http.client.HTTPConnection("127.0.0.1", self.http, timeout=10, source_address=(source_ip, 0))
        conn.request("POST", "/v1/traces", req.SerializeToString(), {"Content-Type": "application/x-protobuf"})
        r = conn.getresponse()
        assert r.status == 200, (r.status, r.read())
        conn.close()

    def resource_of(self, marker: str, timeout: float = 10) -> dict:
        """The resource attributes written with the span named `marker`."""
        found: list[dict] = []

        def look():
            if not self.out.exists():
                return False
            for line in complete_lines(self.out):
                for rs in json.loads(line).get("resourceSpans", []):
                    names = [s["name"] for ss in rs.get("scopeSpans", []) for s in ss.get("spans", [])]
                    if marker in names:
                        found.append({a["key"]: a["value"].get("stringValue") for a in rs["resource"]["attributes"]})
                        return True
            return False

        assert wait_until(look, timeout), f"span {marker} not written\n{self.log()}"
        return found[0]

    def owner_after(self, marker_prefix: str, source_ip: str, want: tuple, timeout: float = 15, resource: dict | None = None) -> dict:
        """Sends until the resource gets the owner `want` (the watch delivers changes within a
        moment); returns the last resource."""
        end = time.time() + timeout
        n = 0
        while True:
            n += 1
            marker = f"{marker_prefix}-{n}"
            self.send(marker, source_ip, resource)
            r = self.resource_of(marker)
            if (r.get("owner.team"), r.get("owner.source")) == want or time.time() > end:
                return r
            time.sleep(0.2)

    def stop(self):
        stop_process(self.proc, self.stderr)


def owner(r: dict) -> tuple:
    return (r.get("owner.team"), r.get("owner.source"))


def test_owners_and_attributes_from_pods_and_namespaces(kube, tmp_path):
    kube.namespace("shop-1", labels={"team": "shop-team"})
    kube.namespace("ops-1", annotations={"owner.example.com/team": "platform"})
    cart = kube.pod("shop-1", "cart-6b7f9c-x1", "node-a", "127.0.0.21",
                    {"team": "carts", "pod-template-hash": "6b7f9c"}, replicaset="cart-6b7f9c")
    kube.pod("shop-1", "web-1", "node-a", "127.0.0.22")
    kube.pod("ops-1", "tool-1", "node-a", "127.0.0.23")
    kube.pod("shop-1", "checkout-1", "node-a", "127.0.0.24", {"team": "carts"})
    kube.pod("shop-1", "ui-1", "node-a", "127.0.0.25", {"backstage.io/kubernetes-id": "storefront-ui"})
    kube.pod("shop-1", "remote-1", "node-b", "127.0.0.26", {"team": "remote"})
    run = Run(tmp_path, f"""      node_from_env_var: K8S_NODE_NAME
      wait_for_metadata: true
      backstage_kubernetes_id: true{TEAM_FROM}""",
              {"KUBECONFIG": str(kube.kubeconfig_path), "K8S_NODE_NAME": "node-a"})
    try:
        # The Python SDK, associated by the k8s.pod.uid its resource carries (as the
        # OpenTelemetry operator injects it).
        provider = TracerProvider(resource=Resource.create({"service.name": "cart", "k8s.pod.uid": cart}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{run.grpc}", insecure=True)))
        with provider.get_tracer("k8s").start_as_current_span("sdk-span"):
            pass
        provider.shutdown()
        r = run.resource_of("sdk-span")
        assert owner(r) == ("carts", "k8s:pod-label")
        assert r["k8s.namespace.name"] == "shop-1"
        assert r["k8s.pod.name"] == "cart-6b7f9c-x1"
        assert r["k8s.deployment.name"] == "cart"
        assert r["k8s.node.name"] == "node-a"

        # By the connection's address.
        run.send("web", "127.0.0.22", {"service.name": "web"})
        assert owner(run.resource_of("web")) == ("shop-team", "k8s:namespace-label")
        run.send("tool", "127.0.0.23", {"service.name": "tool"})
        assert owner(run.resource_of("tool")) == ("platform", "k8s:namespace-annotation")
        # An explicit catalog entry wins over the pod's label; the k8s attributes are added.
        run.send("checkout", "127.0.0.24", {"service.name": "checkout"})
        r = run.resource_of("checkout")
        assert owner(r) == ("payments", "service") and r["k8s.pod.name"] == "checkout-1"
        # backstage.io/kubernetes-id -> the Backstage component -> its owner.
        run.send("ui", "127.0.0.25", {"service.name": "ui"})
        assert owner(run.resource_of("ui")) == ("web-platform", "k8s:backstage")
        # A pod on another node is not watched by this agent.
        run.send("remote", "127.0.0.26", {"service.name": "remote"})
        r = run.resource_of("remote")
        assert owner(r) == ("unowned", "default") and "k8s.pod.name" not in r

        # A label added to a running pod is seen without a restart.
        kube.label_pod("shop-1", "web-1", {"team": "web-team"})
        assert owner(run.owner_after("web-relabelled", "127.0.0.22", ("web-team", "k8s:pod-label"),
                                     resource={"service.name": "web"})) == ("web-team", "k8s:pod-label")

        m = run.metrics()
        assert run.metric('sightline_k8s_pods{processor="ownership"}') == 5, m
        assert run.metric('sightline_k8s_namespaces{processor="ownership"}') >= 3, m
        assert run.metric('sightline_k8s_lookups_total{processor="ownership",result="hit"}') >= 6, m
        assert run.metric('sightline_k8s_lookups_total{processor="ownership",result="miss"}') >= 1, m
    finally:
        run.stop()


def test_ip_reuse_terminating_completed_and_host_network_pods(kube, tmp_path):
    kube.namespace("reuse-1")
    old = kube.pod("reuse-1", "old-1", "node-r", "127.0.0.31", {"team": "old-team"})
    kube.pod("reuse-1", "host-1", "node-r", "127.0.0.32", {"team": "host-team"}, host_network=True)
    kube.pod("reuse-1", "job-1", "node-r", "127.0.0.33", {"team": "job-team"})
    run = Run(tmp_path, f"""      node_from_env_var: K8S_NODE_NAME
      wait_for_metadata: true{TEAM_FROM}""",
              {"KUBECONFIG": str(kube.kubeconfig_path), "K8S_NODE_NAME": "node-r"})
    try:
        run.send("old", "127.0.0.31")
        assert owner(run.resource_of("old")) == ("old-team", "k8s:pod-label")
        # Host-network pods share the node's address: never found by IP.
        run.send("host", "127.0.0.32")
        assert owner(run.resource_of("host")) == ("unowned", "default")
        # A completed pod's IP is free for reuse.
        kube.set_status("reuse-1", "job-1", "Succeeded", "127.0.0.33")
        assert owner(run.owner_after("job", "127.0.0.33", ("unowned", "default"))) == ("unowned", "default")

        # The old pod is deleted but its kubelet has not confirmed yet: terminating, it no
        # longer owns its IP ...
        kube.delete_pod("reuse-1", "old-1", grace=None)
        assert owner(run.owner_after("terminating", "127.0.0.31", ("unowned", "default"))) == ("unowned", "default")
        # ... which a new pod gets while the old one still exists.
        kube.pod("reuse-1", "new-1", "node-r", "127.0.0.31", {"team": "new-team"})
        assert owner(run.owner_after("new", "127.0.0.31", ("new-team", "k8s:pod-label"))) == ("new-team", "k8s:pod-label")
        # The old pod's delete arrives late: the new pod keeps its IP.
        kube.delete_pod("reuse-1", "old-1", grace=0)
        time.sleep(1)
        run.send("after-delete", "127.0.0.31")
        assert owner(run.resource_of("after-delete")) == ("new-team", "k8s:pod-label")
        # Data the old pod sent just before it went still finds it by UID (the grace period).
        run.send("late", "127.0.0.1", {"k8s.pod.uid": old})
        r = run.resource_of("late")
        assert owner(r) == ("old-team", "k8s:pod-label") and r["k8s.pod.name"] == "old-1"
    finally:
        run.stop()


class Proxy:
    """A TCP relay from a loopback port to the API server, which the test can cut (every
    connection closed, new ones refused) and restore on the same port."""

    def __init__(self, upstream_port: int):
        self.upstream = upstream_port
        self.port = free_port()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = None
        self.restore()

    def restore(self):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self.listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def _accept(self, ls):
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.listener.close()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.conns.clear()


def etcd(kube: KubeApiServer, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{kube.etcd_port}{path}", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_a_lost_watch_lists_again_after_410_gone(tmp_path):
    """With the API server's watch cache off, a watch resumed from a compacted
    resourceVersion gets 410 Gone from etcd's history: the watcher lists again, and a pod
    deleted while it was away is removed."""
    if "HELM_BIN" not in os.environ:
        pytest.fail("HELM_BIN must point at helm (scripts/test.sh builds it)")
    kube = KubeApiServer(tmp_path, "--watch-cache=false")
    proxy = Proxy(kube.port)
    try:
        kubeconfig = setup_chart_identity(kube, tmp_path, server=f"https://127.0.0.1:{proxy.port}")
        kube.namespace("gone-1")
        kube.pod("gone-1", "stay-1", "node-g", "127.0.0.41", {"team": "stay-team"})
        kube.pod("gone-1", "leave-1", "node-g", "127.0.0.42", {"team": "leave-team"})
        run = Run(tmp_path, f"""      node_from_env_var: K8S_NODE_NAME
      wait_for_metadata: true{TEAM_FROM}""", {"KUBECONFIG": str(kubeconfig), "K8S_NODE_NAME": "node-g"})
        try:
            run.send("before", "127.0.0.42")
            assert owner(run.resource_of("before")) == ("leave-team", "k8s:pod-label")
            proxy.cut()
            kube.delete_pod("gone-1", "leave-1", grace=0)
            for i in range(5):  # more history, then compact all of it
                kube.namespace(f"churn-{i}")
            rev = int(etcd(kube, "/v3/kv/range", {"key": "YQ=="})["header"]["revision"])
            etcd(kube, "/v3/kv/compaction", {"revision": str(rev), "physical": True})
            proxy.restore()
            r = run.owner_after("after", "127.0.0.42", ("unowned", "default"), timeout=60)
            assert owner(r) == ("unowned", "default"), run.log()
            run.send("stay", "127.0.0.41")
            assert owner(run.resource_of("stay")) == ("stay-team", "k8s:pod-label")
            # The deleted pod is gone although its delete event was compacted away: the pod
            # watch listed again. (Whether that restart is also counted in
            # sightline_k8s_watch_restarts_total depends on how kube's watcher surfaced the cut
            # and the 410: a CI run saw 0 once, so the counter is not asserted here.)
            assert run.metric('sightline_k8s_pods{processor="ownership"}') >= 1
        finally:
            run.stop()
    finally:
        proxy.cut()
        kube.stop()


def test_the_cache_keeps_only_what_ownership_uses(kube, tmp_path):
    """Pods with many labels and a large annotation (kubectl's last-applied-configuration):
    the cache holds a few hundred bytes per pod, whatever the objects' size."""
    kube.namespace("mem-1", labels={"team": "mem-team"})
    big = {"kubectl.kubernetes.io/last-applied-configuration": "x" * 4096}
    labels = {f"label-{i}": f"value-{i}" for i in range(20)}
    n = 150
    for i in range(n):
        name = f"mem-{i}"
        kube.request("POST", "/api/v1/namespaces/mem-1/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {**labels, "team": f"t{i % 7}"}, "annotations": big},
            "spec": {"nodeName": "node-m", "containers": [{"name": "app", "image": "app:1"}]},
        })
    run = Run(tmp_path, f"""      node_from_env_var: K8S_NODE_NAME
      wait_for_metadata: true{TEAM_FROM}""", {"KUBECONFIG": str(kube.kubeconfig_path), "K8S_NODE_NAME": "node-m"})
    try:
        assert run.metric('sightline_k8s_pods{processor="ownership"}') == n
        per_pod = run.metric('sightline_k8s_pod_cache_bytes{processor="ownership"}') / n
        print(f"Kubernetes cache: {per_pod:.0f} bytes per pod (objects of about 5 KB)")
        assert per_pod < 400, per_pod
    finally:
        run.stop()


def test_wait_for_metadata_fails_start_up_clearly_when_the_api_is_unreachable(kube, tmp_path):
    dead = kube.kubeconfig(tmp_path / "dead-kubeconfig", server=f"https://127.0.0.1:{free_port()}")
    run = Run(tmp_path, """      wait_for_metadata: true
      wait_for_metadata_timeout: 2s""", {"KUBECONFIG": str(dead)}, expect_exit=True)
    try:
        assert run.proc.wait(timeout=30) != 0
        log = run.log()
        assert "processors.ownership.kubernetes" in log and "did not sync within 2s" in log, log
    finally:
        run.stop()


def test_sidecar_mode_reads_its_pod_from_the_downward_api(tmp_path):
    (tmp_path / "podinfo").mkdir()
    (tmp_path / "podinfo" / "labels").write_text('app="cart"\npod-template-hash="6b7f9c"\nteam="carts"\n')
    run = Run(tmp_path, f"""      mode: downward_api
      downward_api: {{ labels_file: "{tmp_path}/podinfo/labels", annotations_file: "{tmp_path}/podinfo/annotations" }}
      team_from: [{{ from: pod, label: team }}]""", {
        "K8S_POD_NAME": "cart-6b7f9c-abcde", "K8S_NAMESPACE": "shop", "K8S_POD_UID": "uid-1", "K8S_NODE_NAME": "node-s",
        "KUBECONFIG": str(tmp_path / "no-such-kubeconfig"),
    })
    try:
        run.send("sidecar", "127.0.0.1", {"service.name": "cart"})
        r = run.resource_of("sidecar")
        assert owner(r) == ("carts", "k8s:pod-label")
        assert (r["k8s.pod.name"], r["k8s.namespace.name"], r["k8s.deployment.name"], r["k8s.node.name"], r["k8s.pod.uid"]) == (
            "cart-6b7f9c-abcde", "shop", "cart", "node-s", "uid-1")
        # A catalog service entry still wins.
        run.send("sidecar-checkout", "127.0.0.1", {"service.name": "checkout"})
        assert owner(run.resource_of("sidecar-checkout")) == ("payments", "service")
    finally:
        run.stop()


def test_validate_names_what_is_wrong(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("""
receivers: { otlp: { protocols: { grpc: { endpoint: "127.0.0.1:0" } } } }
processors:
  ownership:
    kubernetes:
      enabled: true
      mode: downward_api
      pod_association:
        - sources: [{ from: resource_attribute, name: k8s.pod.hostname }]
        - sources: [{ from: resource_attribute, name: k8s.pod.name }]
      team_from:
        - { from: namespace, label: team }
        - { from: pod, label: team, annotation: team }
exporters: { debug: {} }
service: { pipelines: { traces: { receivers: [otlp], processors: [ownership], exporters: [debug] } } }
""")
    out = subprocess.run([os.environ["SIGHTLINE_BIN"], "validate", "--config", str(cfg)], capture_output=True, text=True)
    assert out.returncode != 0
    err = out.stderr + out.stdout
    for want in [
        'kubernetes.pod_association[0].sources[0].name: "k8s.pod.hostname" does not identify a pod',
        "kubernetes.pod_association[1]: `k8s.pod.name` and `k8s.namespace.name` identify a pod together",
        "kubernetes.team_from[0]: `from: namespace` needs the API (mode: api)",
        "kubernetes.team_from[1]: give exactly one of `label` and `annotation`",
    ]:
        assert want in err, err
