"""The Helm chart (deploy/helm/sightline) with the real `helm` (v3.22.0, built from its Go
modules by scripts/test.sh into HELM_BIN): `helm lint` and `helm template` for the default
values and each ci/*-values.yaml, the rendered manifests equal to the golden files in
tests/helm/golden (regenerate with SIGHTLINE_UPDATE_GOLDEN=1 and review the diff), every
manifest valid against the Kubernetes 1.37 JSON schemas (kubernetes-validate, offline; the
ServiceMonitor is a CRD whose schema it does not bundle, so it is checked by shape), and the
rendered Sightline config passing `sightline validate` with the rendered catalog.

The image (deploy/Dockerfile) is not built here: no container daemon runs on these machines.
Its test checks the Dockerfile's shape and runs the HEALTHCHECK's command, `sightline
healthcheck`, against a real Sightline."""

import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from conftest import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "sightline"
GOLDEN = REPO / "tests" / "helm" / "golden"
CASES = ["default"] + sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
K8S = "1.37.0"


def helm(*args):
    return subprocess.run([os.environ["HELM_BIN"], *args], capture_output=True, text=True, timeout=120)


def values_args(case):
    return [] if case == "default" else ["-f", str(CHART / "ci" / f"{case}-values.yaml")]


def render(case):
    out = helm("template", "sightline", str(CHART), "--namespace", "observability", *values_args(case))
    assert out.returncode == 0, out.stderr
    return out.stdout


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(manifests):
    out = {}
    for d in manifests:
        out.setdefault(d["kind"], []).append(d)
    return out


@pytest.fixture(scope="module", autouse=True)
def helm_bin():
    if "HELM_BIN" not in os.environ:
        pytest.fail("HELM_BIN must point at helm (scripts/test.sh builds it from its Go modules)")


@pytest.mark.parametrize("case", CASES)
def test_lint_template_golden_and_schemas(case, tmp_path):
    lint = helm("lint", "--strict", str(CHART), *values_args(case))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    text = render(case)
    golden = GOLDEN / f"{case}.yaml"
    if os.environ.get("SIGHTLINE_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: run with SIGHTLINE_UPDATE_GOLDEN=1 and review it"
    assert text == golden.read_text(), f"the rendering of {case} changed: regenerate {golden} and review the diff"

    manifests = docs(text)
    for d in manifests:
        if d["kind"] == "ServiceMonitor":
            assert d["apiVersion"] == "monitoring.coreos.com/v1"
            assert d["spec"]["endpoints"][0]["port"] == "metrics"
            continue
        kubernetes_validate.validate(d, K8S, strict=True)

    # The rendered config, with the rendered catalog, passes `sightline validate`.
    cms = by_kind(manifests)["ConfigMap"]
    config = next(c for c in cms if "sightline.yaml" in (c.get("data") or {}))["data"]["sightline.yaml"]
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    for c in cms:
        if c["metadata"]["name"].endswith("-catalog"):
            for name, body in (c.get("data") or {}).items():
                (catalog / name).write_text(body)
    (tmp_path / "sightline.yaml").write_text(config.replace("/etc/sightline/catalog", str(catalog)))
    v = subprocess.run([os.environ["SIGHTLINE_BIN"], "validate", "--config", str(tmp_path / "sightline.yaml")],
                       capture_output=True, text=True)
    assert v.returncode == 0, v.stderr


def pod_of(manifests):
    kinds = by_kind(manifests)
    (workload,) = kinds.get("DaemonSet", []) + kinds.get("Deployment", []) + kinds.get("StatefulSet", [])
    return workload, workload["spec"]["template"]["spec"]


def test_modes_render_what_each_needs():
    d = docs(render("daemonset"))
    workload, pod = pod_of(d)
    assert workload["kind"] == "DaemonSet"
    c = pod["containers"][0]
    assert {p["name"]: p.get("hostPort") for p in c["ports"]}["otlp"] == 4317, "agents take the node's port"
    assert {"K8S_NODE_NAME", "K8S_POD_NAME", "K8S_NAMESPACE"} <= {e["name"] for e in c["env"]}
    assert c["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert by_kind(d)["Service"][0]["spec"]["internalTrafficPolicy"] == "Local"
    cms = {c["metadata"]["name"]: c for c in by_kind(d)["ConfigMap"]}
    assert "payments.yaml" in cms["sightline-catalog"]["data"]
    assert "HorizontalPodAutoscaler" not in by_kind(d) and "PodDisruptionBudget" not in by_kind(d)

    g = docs(render("deployment"))
    workload, pod = pod_of(g)
    assert workload["kind"] == "Deployment" and "replicas" not in workload["spec"], "the HPA owns replicas"
    kinds = by_kind(g)
    assert kinds["HorizontalPodAutoscaler"][0]["spec"]["minReplicas"] == 3
    assert kinds["PodDisruptionBudget"][0]["spec"]["minAvailable"] == 2
    assert all(p.get("hostPort") is None for p in pod["containers"][0]["ports"])
    assert {v["name"]: v for v in pod["volumes"]}["catalog"]["configMap"]["name"] == "teams-catalog"
    config = yaml.safe_load({c["metadata"]["name"]: c for c in kinds["ConfigMap"]}["sightline"]["data"]["sightline.yaml"])
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["otlp/tempo"]
    assert config["service"]["pipelines"]["metrics"]["exporters"] == ["debug"], "the rest of the default stays"

    s = docs(render("statefulset"))
    workload, pod = pod_of(s)
    assert workload["kind"] == "StatefulSet" and workload["spec"]["replicas"] == 2
    assert workload["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert "data" not in {v["name"] for v in pod["volumes"]}, "the claim, not an emptyDir"
    headless = [x for x in by_kind(s)["Service"] if x["spec"].get("clusterIP") == "None"]
    assert headless and workload["spec"]["serviceName"] == headless[0]["metadata"]["name"]
    config = yaml.safe_load({c["metadata"]["name"]: c for c in by_kind(s)["ConfigMap"]}["sightline"]["data"]["sightline.yaml"])
    assert "batch" not in config["processors"], "null removes a key of the default config"


def test_the_schema_refuses_bad_values():
    bad = helm("template", "sightline", str(CHART), "--set", "mode=sidecar")
    assert bad.returncode != 0 and "mode" in bad.stderr, bad.stderr
    typo = helm("template", "sightline", str(CHART), "--set", "replicas=3")
    assert typo.returncode != 0 and "replicas" in typo.stderr, typo.stderr


def test_the_dockerfile_and_its_healthcheck(tmp_path):
    text = (REPO / "deploy" / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and " AS build" in stages[0], "multi-stage"
    assert "distroless" in stages[1], "no shell in the runtime image"
    assert "USER 65532:65532" in text
    assert 'CMD ["/usr/bin/sightline", "healthcheck", "--url", "http://127.0.0.1:13133/"]' in text
    assert (REPO / "deploy" / "image" / "sightline.yaml").exists()
    # The image's config is valid (its catalog directory is empty in the image).
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    cfg = (REPO / "deploy" / "image" / "sightline.yaml").read_text().replace("/etc/sightline/catalog", str(catalog))
    health, grpc, http, admin = free_port(), free_port(), free_port(), free_port()
    cfg = (cfg.replace("0.0.0.0:13133", f"127.0.0.1:{health}").replace("0.0.0.0:4317", f"127.0.0.1:{grpc}")
           .replace("0.0.0.0:4318", f"127.0.0.1:{http}").replace("0.0.0.0:8888", f"127.0.0.1:{admin}"))
    (tmp_path / "image.yaml").write_text(cfg)
    v = subprocess.run([os.environ["SIGHTLINE_BIN"], "validate", "--config", str(tmp_path / "image.yaml")],
                       capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    # The HEALTHCHECK's command against the running binary: healthy once up, failing once gone.
    probe = [os.environ["SIGHTLINE_BIN"], "healthcheck", "--url", f"http://127.0.0.1:{health}/"]
    assert subprocess.run(probe, capture_output=True).returncode == 1, "nothing listens yet"
    log = open(tmp_path / "stderr.log", "w")
    proc = subprocess.Popen([os.environ["SIGHTLINE_BIN"], "run", "--config", str(tmp_path / "image.yaml")], stderr=log)
    try:
        assert wait_until(lambda: subprocess.run(probe, capture_output=True).returncode == 0, 30), (
            tmp_path / "stderr.log").read_text()
        # A path the admin server does not serve: the probe says which status it got.
        wrong = [os.environ["SIGHTLINE_BIN"], "healthcheck", "--url", f"http://127.0.0.1:{admin}/nope"]
        r = subprocess.run(wrong, capture_output=True, text=True)
        assert r.returncode == 1 and "status 404" in r.stderr, r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_presets_add_what_they_need():
    a = docs(render("agent-presets"))
    kinds = by_kind(a)
    config = yaml.safe_load(next(c for c in kinds["ConfigMap"] if "sightline.yaml" in c["data"])["data"]["sightline.yaml"])
    k8s = config["processors"]["ownership"]["kubernetes"]
    assert k8s["enabled"] and k8s["node_from_env_var"] == "K8S_NODE_NAME", "agents watch their node's pods"
    assert k8s["backstage_kubernetes_id"] and k8s["wait_for_metadata"]
    assert k8s["team_from"][1] == {"from": "namespace", "annotation": "owner.example.com/team"}
    (role,) = kinds["ClusterRole"]
    granted = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {(g, r): {"get", "list", "watch"} for g, r in [("", "pods"), ("", "namespaces"), ("apps", "replicasets")]}
    (binding,) = kinds["ClusterRoleBinding"]
    (sa,) = kinds["ServiceAccount"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "observability"}]
    lb = config["exporters"]["loadbalancing"]
    assert lb["resolver"]["dns"] == {"hostname": "sightline-gateway-headless.observability.svc.cluster.local", "port": 4317}
    assert all(p["exporters"] == ["loadbalancing"] for p in config["service"]["pipelines"].values())

    g = docs(render("gateway-presets"))
    kinds = by_kind(g)
    config = yaml.safe_load(next(c for c in kinds["ConfigMap"] if "sightline.yaml" in c["data"])["data"]["sightline.yaml"])
    gk8s = config["processors"]["ownership"]["kubernetes"]
    assert "node_from_env_var" not in gk8s, "gateways watch every pod"
    sources = [s["from"] for rule in gk8s["pod_association"] for s in rule["sources"]]
    assert "connection" not in sources, "a gateway's connections come from agents, not from the data's pods"
    assert "pod_association" not in k8s, "agents keep the default, which ends with the connection"
    assert "loadbalancing" not in config["exporters"]
    headless = [s for s in kinds["Service"] if s["spec"].get("clusterIP") == "None"]
    assert [s["metadata"]["name"] for s in headless] == ["sightline-gateway-headless"]
    assert headless[0]["spec"]["publishNotReadyAddresses"] is False, "agents route only to ready gateways"

    # An agent without the gateways' hostname is refused with the reason.
    out = helm("template", "sightline", str(CHART), "--set", "presets.gatewayLoadBalancing.enabled=true")
    assert out.returncode != 0 and "presets.gatewayLoadBalancing.hostname" in out.stderr
